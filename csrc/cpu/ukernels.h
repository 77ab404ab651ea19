// The CPU fast path's micro-kernels and the drivers that run them over a plan (plan.h),
// written once for every ISA: templates over a vector-traits type V (simd/*.h: register type,
// lanes, register count, load / store / broadcast / fma / lane tails / dtype conversion) and
// the tensor's element type T. Tile shapes come from V::registers, not from a table.
//
// Included once by each isa/*.cpp, after it defines CORR2D_TARGET (the target attribute of its
// ISA, empty for the generic instantiations). Everything here has internal linkage, so the
// copies compiled for different targets can never be mixed up by the linker.
//
// Numerics: bfloat16 and float16 are converted to float once, when the rows are staged (and
// the weights packed), accumulated in float, and rounded once, when the result is stored;
// float64 runs the same templates with 64-bit lanes.
#pragma once

#ifndef CORR2D_TARGET
#error "define CORR2D_TARGET (the ISA's target attribute, or nothing) before including ukernels.h"
#endif

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "plan.h"

// The accumulator arrays must be unrolled away into registers: a loop the compiler leaves
// rolled indexes them at run time, which keeps them in memory and adds a store to every FMA.
#define CORR2D_UNROLL _Pragma("GCC unroll 16")

namespace corr2d_ext {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Register budget. A tile of A x B accumulators streams either its B vectors plus one
// broadcast, or its A broadcasts plus one vector, through the remaining registers, whichever
// is fewer; so it fits when A * B + min(A, B) + 1 <= registers. Every slot (forward) or tap
// (weight gradient) of a tile also needs a base pointer or offset in a general register, and
// x86-64 has 16 of those, of which the loops use about 6: kMaxStreams caps B.
constexpr int kMaxStreams = 8;
constexpr int kMaxWeightGradTaps = 12;

constexpr bool tile_fits(int a, int b, int registers) {
  return a * b + std::min(a, b) + 1 <= registers;
}
// Pixel vectors per forward tile of `ocb` output channels.
template <typename V>
constexpr int forward_vectors(int ocb) {
  int nv = 1;
  while (nv < kMaxStreams && tile_fits(ocb, nv + 1, V::registers)) ++nv;
  return nv;
}
// Taps per weight-gradient tile of `ocb` output channels.
template <typename V>
constexpr int weight_grad_taps_per_tile(int ocb) {
  int tb = 1;
  while (tb < kMaxWeightGradTaps && tile_fits(ocb, tb + 1, V::registers)) ++tb;
  return tb;
}
// The most output channels a weight-gradient tile blocks (forward: kMaxForwardOcb, plan.h).
constexpr int kMaxOcb = 4;
template <typename V>
struct ForwardVectors {
  int nv[kMaxForwardOcb + 1];
  constexpr ForwardVectors() : nv{} {
    for (int k = 1; k <= kMaxForwardOcb; ++k) nv[k] = forward_vectors<V>(k);
  }
};
// Enough slots per task to fill the widest tile.
template <typename V>
constexpr int min_slots() { return V::registers - 4; }

// A call's scratch buffer, left uninitialized: everything in it is written before it is read
// (and zero-filling megabytes that staging then overwrites costs a pass over memory).
template <typename S>
std::unique_ptr<S[]> scratch(int64_t n) {
  return std::unique_ptr<S[]>(n > 0 ? new S[n] : nullptr);
}

// The first n lanes of p, converted, zeros in the others; memory past p + n is not read. The
// traits' masked load for V::scalar; bfloat16 and float16 (a slot's last vector, rarely) go
// through a zeroed buffer.
template <typename V, typename T>
CORR2D_TARGET __attribute__((always_inline)) inline typename V::reg load_first_from(const T* p,
                                                                                     int n) {
  if constexpr (std::is_same_v<T, typename V::scalar>) {
    return V::load_first(p, n);
  } else {
    T tmp[V::lanes] = {};
    for (int k = 0; k < n; ++k) tmp[k] = p[k];
    return V::template load_from<T>(tmp);
  }
}
// A whole vector, or (MASKED) its first n lanes only.
template <typename V, bool MASKED, typename T>
CORR2D_TARGET __attribute__((always_inline)) inline typename V::reg load_lanes(const T* p, int n) {
  if constexpr (MASKED) return load_first_from<V>(p, n);
  else return V::template load_from<T>(p);
}
// v's first n lanes to p, converted; memory past p + n is not written.
template <typename V, typename T>
CORR2D_TARGET __attribute__((always_inline)) inline void store_first_to(T* p, typename V::reg v,
                                                                        int n) {
  if (n == V::lanes) {
    V::template store_to<T>(p, v);
  } else if constexpr (std::is_same_v<T, typename V::scalar>) {
    V::store_first(p, v, n);
  } else {
    alignas(64) typename V::scalar tmp[V::lanes];
    V::store(tmp, v);
    for (int k = 0; k < n; ++k) p[k] = static_cast<T>(tmp[k]);
  }
}

// ---------------------------------------------------------------------------------------------
// Staging: the rows a task reads, converted to V::scalar, zero-padded, phase-split.

// dst[j] = from[j] for j in [0, n), in whole vectors (the last one's stores run past n, its
// loads do not): the inner copy of stage_row, inlined where a row is all copy (a folded row
// of a few pixels: one masked load and one store).
template <typename V, typename T>
CORR2D_TARGET __attribute__((always_inline)) inline void copy_run(typename V::scalar* dst,
                                                                  const T* from, int64_t n) {
  int64_t j = 0;
  for (; j + V::lanes <= n; j += V::lanes) V::store(dst + j, V::template load_from<T>(from + j));
  if (j < n) V::store(dst + j, load_first_from<V>(from + j, static_cast<int>(n - j)));
}

// dst[j] = from[j] for j in [begin, end), 0 elsewhere in [0, len): one staged row at stride 1.
// Rows are often a few dozen elements (depthwise, LeNet), where a library call costs more than
// the copy, so this is whole-vector stores only: the zeros before `begin` and after `end` are
// written a vector at a time, running over into the copied part (rewritten after) and past
// `len` (into the next row, staged after this one, or the slab's one vector of slack). The
// optimize attribute stops GCC from turning the zero loops back into memset calls.
template <typename V, typename T>
CORR2D_TARGET __attribute__((optimize("no-tree-loop-distribute-patterns"))) void stage_row(
    typename V::scalar* dst, const T* from, int64_t begin, int64_t end, int64_t len) {
  const auto zero = V::zero();
  for (int64_t j = 0; j < begin; j += V::lanes) V::store(dst + j, zero);
  copy_run<V>(dst + begin, from + begin, end - begin);
  for (int64_t j = end; j < len; j += V::lanes) V::store(dst + j, zero);
}

// How one src row of `cols` elements, padded by `padding` zeros, splits into `stride` column
// phases of `phase_len` elements: phase q holds padded columns q, q + stride, ..., of which
// j in [first(q), last(q)) are inside the image. Found once per staged image, not per row (two
// divisions per phase cost more than a short row's copy).
struct RowSplit {
  int64_t stride, phase_len, padding, cols;
  int64_t lo_q, lo_r, hi_q, hi_r;  // padding and cols + padding, divided by the stride

  RowSplit(int64_t stride_, int64_t phase_len_, int64_t padding_, int64_t cols_)
      : stride(stride_), phase_len(phase_len_), padding(padding_), cols(cols_),
        lo_q(padding_ / stride_), lo_r(padding_ % stride_),
        hi_q((cols_ + padding_) / stride_), hi_r((cols_ + padding_) % stride_) {}
  // ceil((p - q) / stride) for p = lo_q * stride + lo_r and 0 <= q < stride, p >= 0.
  int64_t first(int64_t q) const { return std::min(phase_len, lo_q + (q < lo_r)); }
  int64_t last(int64_t q) const {
    return std::clamp<int64_t>(hi_q + (q < hi_r), first(q), phase_len);
  }

  // out[q * phase_len + j] = padded column j * stride + q of `row`.
  template <typename S, typename T>
  void split(const T* row, S* out) const {
    for (int64_t q = 0; q < stride; ++q) {
      S* phase = out + q * phase_len;
      const int64_t j0 = first(q), j1 = last(q);
      for (int64_t j = 0; j < j0; ++j) phase[j] = S(0);
      const T* from = row + q - padding;
      // Stride 2 (every strided layer of ResNet and MobileNet) as a constant, which the
      // compiler vectorizes; the element-by-element copy was a third of a strided depthwise
      // forward (576 channels 3x3/2 on 14x14, NCHW).
      if (stride == 2)
        for (int64_t j = j0; j < j1; ++j) phase[j] = static_cast<S>(from[2 * j]);
      else
        for (int64_t j = j0; j < j1; ++j) phase[j] = static_cast<S>(from[j * stride]);
      for (int64_t j = j1; j < phase_len; ++j) phase[j] = S(0);
    }
  }
};

// RowSplit::split at stride 2 in vectors, read straight from the src row: each 2 x lanes of
// src columns (the last one's lanes past the row's end loaded as zeros, and not read) split
// into their even lanes (phase 0) and odd lanes (phase 1); the few elements before the first
// such pair (left padding) and after the last whole vector of a phase, one at a time. The
// scalar split's short loops, with a scalar tail on each and the zero fills around them, were
// three fifths of a 192-channel depthwise 3x3/2 forward on 28x28 (NCHW, Zen 4): five times its
// multiply-adds. (A padded copy of the row, split after, stalled on every load: each spans two
// of the copy's stores, which the CPU cannot forward.)
//
// With a `pitch` (> 0), phase 1 starts `pitch` elements after phase 0, and the last vector of
// each phase is stored whole, its lanes past phase_len too (a pitch of at least phase_len +
// lanes - 1 holds them): no scalar tail, for rows of a few vectors (SrcPlanes), where the
// tail was as long as the vectors.
template <typename V, typename T>
CORR2D_TARGET void split_in_two(const RowSplit& how, const T* row, typename V::scalar* out,
                                int64_t pitch = 0) {
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  const int64_t len = how.phase_len, cols = how.cols, pad = how.padding;
  // Phase q's element j is src column 2j + q - pad, zero outside [0, cols).
  const auto at = [&](int64_t c) { return c >= 0 && c < cols ? static_cast<S>(row[c]) : S(0); };
  S* even = out;
  S* odd = out + (pitch > 0 ? pitch : len);
  // The vectors' stores end at or past len (pitch) or within it.
  const int64_t vectors_end = pitch > 0 ? len + L - 1 : len;
  int64_t j = 0;
  for (; j < len && 2 * j < pad; ++j) {
    even[j] = at(2 * j - pad);
    odd[j] = at(2 * j + 1 - pad);
  }
  for (; j + L <= vectors_end; j += L) {
    const int64_t c = 2 * j - pad;
    const int64_t n = std::clamp<int64_t>(cols - c, 0, 2 * L);
    typename V::reg a = V::zero(), b = V::zero();
    if (n >= L) {
      a = V::template load_from<T>(row + c);
      if (n == 2 * L)
        b = V::template load_from<T>(row + c + L);
      else if (n > L)
        b = load_first_from<V>(row + c + L, static_cast<int>(n - L));
    } else if (n > 0) {
      a = load_first_from<V>(row + c, static_cast<int>(n));
    }
    V::store(even + j, V::even_lanes(a, b));
    V::store(odd + j, V::odd_lanes(a, b));
  }
  for (; j < len; ++j) {
    even[j] = at(2 * j - pad);
    odd[j] = at(2 * j + 1 - pad);
  }
}

// Rows first_row .. first_row + rows - 1 of one src plane, each padded (zeros outside the
// image) and split into its `stride` column phases: phase q of row t holds padded columns q,
// q + stride, ... as `phase_len` consecutive elements, enough for `width` dst columns at every
// kernel column. Rows outside the image are not filled (the folded staging writes their zeros).
template <typename S>
struct PhaseSplitRows {
  int64_t rows, input_cols, input_rows;
  RowSplit how;
  S small[1024];
  std::vector<S> large;
  S* data;

  PhaseSplitRows(const Geometry& g, int64_t rows_, int64_t width)
      : rows(rows_), input_cols(g.cols.input), input_rows(g.rows.input),
        how(g.cols.stride,
            ((width - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation) / g.cols.stride + 1,
            g.cols.padding, g.cols.input) {
    const int64_t n = how.stride > 1 ? rows * how.stride * how.phase_len : 0;
    if (n > 1024) large.resize(n);
    data = n > 1024 ? large.data() : small;
  }
  const S* row(int64_t t, int64_t q) const { return data + (t * how.stride + q) * how.phase_len; }

  template <typename V, typename T>
  CORR2D_TARGET void fill(const T* plane, int64_t first_row) {
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t r = first_row + t;
      if (r < 0 || r >= input_rows) continue;
      S* out = data + t * how.stride * how.phase_len;
      if (how.stride == 2)
        split_in_two<V>(how, plane + r * input_cols, out);
      else
        how.split(plane + r * input_cols, out);
    }
  }
};

// Fills the slab with src channels [c_begin, c_end) of image n, for the dst rows starting at
// y0: zeros wherever the window reaches into padding (or past the end, for the rounded-up last
// vector). A task stages one group (or a few depthwise channels, or one weight-gradient block)
// at a time, so the slab stays in L2 however many channels the layer has.
template <typename V, typename T>
CORR2D_TARGET void stage_image(const Geometry& g, const Slab& s, const T* src, int64_t n, int64_t y0,
                 int64_t c_begin, int64_t c_end, typename V::scalar* slab);

// The rows of `images` images from n0 (a block; see Blocks), image i at i * image_stride of
// each staged channel. In memory order (channel, then image), so that the whole-vector zeros
// stage_row writes past a row's end land only on what is staged after them.
template <typename V, typename T>
void stage(const Geometry& g, const Slab& s, const T* src, const Blocks::Block& blk,
           int64_t c_begin, int64_t c_end, typename V::scalar* slab) {
  for (int64_t c = c_begin; c < c_end; ++c)
    for (int64_t i = 0; i < blk.images; ++i)
      stage_image<V, T>(g, s, src, blk.n0 + i, blk.y0, c, c + 1,
                        slab + (c - c_begin) * s.channel_stride + i * s.image_stride);
}

template <typename V, typename T>
CORR2D_TARGET void stage_image(const Geometry& g, const Slab& s, const T* src, int64_t n, int64_t y0,
                 int64_t c_begin, int64_t c_end, typename V::scalar* slab) {
  using S = typename V::scalar;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t first_row = y0 * rows.stride - rows.padding;
  if (s.folded) {
    // Copy by copy (kernel column, row phase), each row by row, so that stage_row's whole-vector
    // zeros past a row's end land only on what is staged after them.
    // Strided columns: every staged row is first split into its column phases, padded, once
    // (the one scalar pass), so that each kernel column's copy is a contiguous run.
    PhaseSplitRows<S> split(g, s.phase_rows * rows.stride, s.width);
    for (int64_t c = c_begin; c < c_end; ++c) {
      const T* plane = src + g.input_offset(n, c);
      S* channel = slab + (c - c_begin) * s.channel_stride;
      if (cols.stride > 1) split.template fill<V>(plane, first_row);
      for (int64_t kw = 0; kw < cols.kernel; ++kw)
        for (int64_t q = 0; q < rows.stride; ++q) {
          S* copy = channel + (kw * rows.stride + q) * s.copy_stride;
          // dst column x reads src column x * stride + col0.
          const int64_t col0 = kw * cols.dilation - cols.padding;
          if (rows.stride == 1 && cols.stride == 1 && col0 == 0 && cols.input == s.width) {
            // Whole src rows, one after another in both (a 1x1 kernel without padding, say):
            // the rows inside the image are one contiguous run, copied at once.
            const int64_t m0 = std::clamp<int64_t>(-first_row - q, 0, s.phase_rows);
            const int64_t m1 = std::clamp<int64_t>(rows.input - first_row - q, m0, s.phase_rows);
            for (int64_t x = 0; x < m0 * s.width; ++x) copy[x] = S(0);
            const int64_t n = (m1 - m0) * s.width;
            stage_row<V, T>(copy + m0 * s.width, plane + (first_row + q + m0) * cols.input, 0, n, n);
            for (int64_t x = m1 * s.width; x < s.phase_rows * s.width; ++x) copy[x] = S(0);
            continue;
          }
          for (int64_t m = 0; m < s.phase_rows; ++m) {
            S* dst = copy + m * s.width;
            const int64_t t = m * rows.stride + q;
            const int64_t r = first_row + t;
            if (r < 0 || r >= rows.input) {
              for (int64_t x = 0; x < s.width; ++x) dst[x] = S(0);
              continue;
            }
            if (cols.stride == 1) {
              const int64_t begin = std::clamp<int64_t>(-col0, 0, s.width);
              const int64_t end = std::clamp<int64_t>(cols.input - col0, begin, s.width);
              stage_row<V, T>(dst, plane + r * cols.input + col0, begin, end, s.width);
            } else {
              // dst column x reads padded column x * stride + kw * dilation: a contiguous run of
              // one phase of the split row.
              const int64_t pc = kw * cols.dilation;
              copy_run<V>(dst, split.row(t, pc % cols.stride) + pc / cols.stride, s.width);
            }
          }
        }
    }
    return;
  }
  const RowSplit by_rows(cols.stride, s.phase_len, cols.padding, cols.input);
  for (int64_t c = c_begin; c < c_end; ++c) {
    const T* plane = src + g.input_offset(n, c);
    for (int64_t t = 0; t < s.rows; ++t) {
      S* dst = slab + (c - c_begin) * s.channel_stride + t * s.row_stride;
      const int64_t r = first_row + t;
      if (r < 0 || r >= rows.input) {
        for (int64_t j = 0; j < s.row_stride; ++j) dst[j] = S(0);
        continue;
      }
      const T* row = plane + r * cols.input;
      if (cols.stride == 1) {
        // Padded column j holds source column j - padding.
        const int64_t begin = std::clamp<int64_t>(cols.padding, 0, s.phase_len);
        const int64_t end = std::clamp<int64_t>(cols.padding + cols.input, begin, s.phase_len);
        stage_row<V, T>(dst, row - cols.padding, begin, end, s.phase_len);
      } else {
        if (cols.stride == 2)
          split_in_two<V>(by_rows, row, dst);
        else
          by_rows.split(row, dst);
      }
    }
  }
}

// Every channel of every block, staged once (in parallel, by channel: each has its own slack)
// into a buffer the tasks share, `per_block` elements a block.
template <typename V, typename T>
std::unique_ptr<typename V::scalar[]> stage_every_block(const Geometry& g, const Slab& s,
                                                        const Blocks& blocks, const T* src,
                                                        int64_t per_block) {
  auto staged = scratch<typename V::scalar>(blocks.count * per_block);
  const int64_t cs = s.channel_stride;
  const int64_t grain = std::max<int64_t>(1, 16384 / cs);
  at::parallel_for(0, blocks.count * g.in_channels, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / g.in_channels, c = u % g.in_channels;
      stage<V, T>(g, s, src, blocks[b], c, c + 1, staged.get() + b * per_block + c * cs);
    }
  });
  return staged;
}

// The weights of `count` forward-form dst channels from d_rel0 of one group, converted and
// packed as [src channel][tap][channel], so that a tile's broadcasts for one tap are adjacent.
template <typename S, typename T>
void pack_weights(const WeightLayout& wl, const Geometry& g, const T* w, int64_t group,
                  int64_t d_rel0, int count, S* out) {
  const int64_t cin = g.in_channels_per_group();
  const T* base = w + group * wl.group + d_rel0 * wl.dst + wl.offset;
  // Taps by row and column (not t / kw and t % kw: two divisions per tap cost more than the
  // copy of its `count` weights).
  for (int64_t i = 0; i < cin; ++i)
    for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
      for (int64_t kw = 0; kw < g.cols.kernel; ++kw) {
        const T* at = base + i * wl.src + kh * wl.tap_row + kw * wl.tap_col;
        for (int j = 0; j < count; ++j) out[j] = static_cast<S>(at[j * wl.dst]);
        out += count;
      }
}

// ---------------------------------------------------------------------------------------------
// Forward-form micro-kernel: OCB dst channels x NV slots, for `run.blocks` consecutive channel
// blocks that share the slots (every channel of a depthwise chunk), so that setting up the
// slots is paid once per run. For block b: the slab at in_off[v] + b * in_stride (slot v's
// pixel 0, src channel 0), packed weights from w + b * w_stride, bias from bias + b *
// bias_stride, and slot v's lanes written to out + out_off[v] + b * out_stride, of which
// `valid[v]` are kept (fewer at the right edge, none for a slot that only pads the last tile).
struct BlockRun {
  int64_t blocks, in_stride, w_stride, bias_stride, out_stride;
};

template <typename V, typename T, int OCB, int NV>
CORR2D_TARGET void forward_tile(const typename V::scalar* in, const int64_t* in_off,
                                int64_t channel_stride, const int64_t* tap_off, int64_t taps,
                                int64_t channels, const typename V::scalar* w,
                                const typename V::scalar* bias, T* out, const int64_t* out_off,
                                const int* valid, int64_t out_o_stride,
                                const int64_t* lane_off, const BlockRun& run) {
  using S = typename V::scalar;
  using R = typename V::reg;
  for (int64_t b = 0; b < run.blocks; ++b) {
    const S* wb = w + b * run.w_stride;
    R acc[OCB][NV];
    CORR2D_UNROLL
    for (int j = 0; j < OCB; ++j) {
      const R init = V::set1(bias[b * run.bias_stride + j]);
      CORR2D_UNROLL
      for (int v = 0; v < NV; ++v) acc[j][v] = init;
    }
    const S* base[NV];
    CORR2D_UNROLL
    for (int v = 0; v < NV; ++v) base[v] = in + in_off[v] + b * run.in_stride;
    for (int64_t i = 0; i < channels; ++i) {
      const S* wi = wb + i * taps * OCB;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t off = tap_off[t];
        const S* wt = wi + t * OCB;
        // The smaller operand set stays in registers (see tile_fits).
        if constexpr (NV <= OCB) {
          R x[NV];
          CORR2D_UNROLL
          for (int v = 0; v < NV; ++v) x[v] = V::load(base[v] + off);
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) {
            const R wv = V::set1(wt[j]);
            CORR2D_UNROLL
            for (int v = 0; v < NV; ++v) acc[j][v] = V::fma(wv, x[v], acc[j][v]);
          }
        } else {
          R wv[OCB];
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) wv[j] = V::set1(wt[j]);
          CORR2D_UNROLL
          for (int v = 0; v < NV; ++v) {
            const R x = V::load(base[v] + off);
            CORR2D_UNROLL
            for (int j = 0; j < OCB; ++j) acc[j][v] = V::fma(wv[j], x, acc[j][v]);
          }
        }
      }
      CORR2D_UNROLL
      for (int v = 0; v < NV; ++v) base[v] += channel_stride;
    }
    CORR2D_UNROLL
    for (int v = 0; v < NV; ++v) {
      T* o = out + out_off[v] + b * run.out_stride;
      if (lane_off) {
        // Pixels apart in the dst (every stride-th pixel, for a phase of the input gradient,
        // maybe across rows): one scalar store each, against the channels x taps of
        // multiply-adds behind it.
        const int64_t* lo = lane_off + v * V::lanes;
        alignas(64) S tmp[V::lanes];
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) {
          V::store(tmp, acc[j][v]);
          for (int k = 0; k < valid[v]; ++k) o[j * out_o_stride + lo[k]] = static_cast<T>(tmp[k]);
        }
      } else if (valid[v] == V::lanes) {
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) V::template store_to<T>(o + j * out_o_stride, acc[j][v]);
      } else if (valid[v] > 0) {
        if constexpr (std::is_same_v<T, S>) {
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) V::store_first(o + j * out_o_stride, acc[j][v], valid[v]);
        } else {
          alignas(64) S tmp[V::lanes];
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) {
            V::store(tmp, acc[j][v]);
            for (int k = 0; k < valid[v]; ++k) o[j * out_o_stride + k] = static_cast<T>(tmp[k]);
          }
        }
      }
    }
  }
}

// Runs the OCB x NV micro-kernel over every slot of a task, NV slots at a time (the last
// tile padded with repeats of its first slot, with no valid lanes).
template <typename V, typename T, int OCB>
void forward_slots(const SlotTable& st, const typename V::scalar* slab, int64_t channel_stride,
                   const int64_t* tap_off, int64_t taps, int64_t channels,
                   const typename V::scalar* w, const typename V::scalar* bias, T* out,
                   int64_t out_plane, const BlockRun& run) {
  constexpr int NV = forward_vectors<V>(OCB);
  constexpr int L = V::lanes;
  const int n = st.size();
  const int64_t* lanes = st.lane_off.empty() ? nullptr : st.lane_off.data();
  int first = 0;
  for (; first + NV <= n; first += NV)
    forward_tile<V, T, OCB, NV>(slab, st.in_off.data() + first, channel_stride, tap_off, taps,
                                channels, w, bias, out, st.out_off.data() + first,
                                st.valid.data() + first, out_plane,
                                lanes ? lanes + first * L : nullptr, run);
  if (first < n) {
    int64_t in_off[NV], out_off[NV], lane_off[lanes ? NV * L : 1];
    int valid[NV];
    for (int v = 0; v < NV; ++v) {
      const int k = first + v < n ? first + v : first;
      in_off[v] = st.in_off[k];
      out_off[v] = st.out_off[k];
      valid[v] = first + v < n ? st.valid[k] : 0;
      if (lanes) std::copy(lanes + k * L, lanes + (k + 1) * L, lane_off + v * L);
    }
    forward_tile<V, T, OCB, NV>(slab, in_off, channel_stride, tap_off, taps, channels, w, bias,
                                out, out_off, valid, out_plane, lanes ? lane_off : nullptr, run);
  }
}

// dst = correlation of src with the weight (read through `wl`) + bias, in forward form,
// written through `dl`.
template <typename V, typename T>
void correlate(const Geometry& g_in, const WeightLayout& wl_in, const DstLayout& dl,
               const T* src, const T* w, const T* bias, T* dst) {
  Geometry g = g_in;
  WeightLayout wl = wl_in;
  drop_padding_taps(g, wl);
  using S = typename V::scalar;
  static constexpr ForwardVectors<V> kVectors{};
  constexpr bool kSameType = std::is_same_v<T, S>;
  const CorrelationPlan plan(g, dl, V::lanes, sizeof(S), kSameType, min_slots<V>(), kVectors.nv);
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  const int64_t taps = g.kernel_area();
  const int64_t out_plane = dl.channel;
  const int64_t chunk = plan.groups_per_stage;
  const bool depthwise = cin == 1 && cout == 1;
  const int64_t cs = plan.slab.channel_stride;
  const int64_t* tap_off = plan.tap_off.data();
  const int64_t per_channel = cin * taps;  // packed weight elements per dst channel

  // The tiles' weights and the biases, converted and packed once. A tile of dst channels
  // [d, d + k) of group grp is packed at (grp * cout + d) * per_channel (depthwise: channel c
  // at c * taps), so a piece's consecutive tiles are consecutive in `packed`.
  std::vector<S> biases(g.out_channels);
  for (int64_t o = 0; o < g.out_channels; ++o) biases[o] = bias ? static_cast<S>(bias[o]) : S(0);
  const int64_t tiles_per_group = depthwise ? 1 : (cout + plan.ocb - 1) / plan.ocb;
  const auto pack_tile = [&](int64_t grp, int64_t d, S* to) {
    const int count = static_cast<int>(depthwise ? 1 : std::min<int64_t>(plan.ocb, cout - d));
    pack_weights(wl, g, w, grp, d, count, to);
  };
  const auto packed = scratch<S>(plan.pack_once ? g.out_channels * per_channel : 0);
  if (plan.pack_once) {
    const int64_t grain = std::max<int64_t>(1, 4096 / (plan.ocb * per_channel));
    at::parallel_for(0, g.groups * tiles_per_group, grain, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t grp = u / tiles_per_group, d = (u % tiles_per_group) * plan.ocb;
        pack_tile(grp, d, packed.get() + (grp * cout + d) * per_channel);
      }
    });
  }
  // Every block's rows, staged once, when the plan shares them between a block's pieces.
  const auto staged = plan.shared_stage
                          ? stage_every_block<V, T>(g, plan.slab, plan.blocks, src, plan.block_stage)
                          : nullptr;

  at::parallel_for(0, plan.tasks, plan.grain, [&](int64_t begin, int64_t end) {
    // Per thread, only what is not shared: one group's (or depthwise chunk's) staged rows, and
    // one tile's weights.
    std::vector<S> slab(plan.shared_stage || plan.slab.in_place ? 0 : plan.slab.size(chunk * cin));
    std::vector<S> wpack(plan.pack_once ? 0 : (depthwise ? chunk : kMaxForwardOcb) * per_channel);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / plan.pieces;
      const Blocks::Block blk = plan.blocks[b];
      const int64_t piece = task % plan.pieces;
      const SlotTable& slots = plan.slots.of(blk, plan.blocks);
      T* out_n = dst + blk.n0 * dl.image + dl.offset + blk.y0 * dl.row;
      // Src channels [c0, c1) of this block: the src itself, staged and shared, or staged here.
      const auto rows_of = [&](int64_t c0, int64_t c1) -> const S* {
        if constexpr (kSameType)
          if (plan.slab.in_place) return src + g.input_offset(blk.n0, c0) + blk.y0 * g.cols.input;
        if (plan.shared_stage) return staged.get() + b * plan.block_stage + c0 * cs;
        stage<V, T>(g, plan.slab, src, blk, c0, c1, slab.data());
        return slab.data();
      };
      if (depthwise) {
        const int64_t first = piece * g.groups / plan.pieces;
        const int64_t last = (piece + 1) * g.groups / plan.pieces;
        for (int64_t g0 = first; g0 < last; g0 += chunk) {
          const int64_t g1 = std::min(last, g0 + chunk);
          const S* in = rows_of(g0, g1);
          const S* wp = packed.get() + g0 * taps;
          if (!plan.pack_once) {
            for (int64_t c = g0; c < g1; ++c) pack_tile(c, 0, wpack.data() + (c - g0) * taps);
            wp = wpack.data();
          }
          const BlockRun run{g1 - g0, cs, taps, 1, out_plane};
          forward_slots<V, T, 1>(slots, in, cs, tap_off, taps, 1, wp, biases.data() + g0,
                                 out_n + g0 * out_plane, out_plane, run);
        }
        continue;
      }
      // This piece's dst channels of every group: whole tiles of plan.ocb, the last one short.
      const int64_t d_first = piece * tiles_per_group / plan.pieces * plan.ocb;
      const int64_t d_last = std::min(cout, (piece + 1) * tiles_per_group / plan.pieces * plan.ocb);
      const BlockRun one{1, 0, 0, 0, 0};
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const S* in = rows_of(grp * cin, (grp + 1) * cin);
        for (int64_t d = d_first; d < d_last;) {
          const int ocb = static_cast<int>(std::min<int64_t>(plan.ocb, d_last - d));
          const int64_t o0 = grp * cout + d;
          const S* wp = packed.get() + o0 * per_channel;
          if (!plan.pack_once) {
            pack_tile(grp, d, wpack.data());
            wp = wpack.data();
          }
          const S* bp = biases.data() + o0;
          T* out = out_n + o0 * out_plane;
#define CORR2D_FORWARD_TILE(K)                                                               \
  case K:                                                                                    \
    forward_slots<V, T, K>(slots, in, cs, tap_off, taps, cin, wp, bp, out, out_plane, one);   \
    break;
          switch (ocb) {
            CORR2D_FORWARD_TILE(8)
            CORR2D_FORWARD_TILE(7)
            CORR2D_FORWARD_TILE(6)
            CORR2D_FORWARD_TILE(5)
            CORR2D_FORWARD_TILE(4)
            CORR2D_FORWARD_TILE(3)
            CORR2D_FORWARD_TILE(2)
            default: CORR2D_FORWARD_TILE(1)
          }
#undef CORR2D_FORWARD_TILE
          d += ocb;
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Channels last (plan.h: ChannelsLastPlan): a tile of P dst pixels x CV vectors of dst channels.
// src[t * P + p] points at the src pixel that tap t of pixel p reads (at the tile's first src
// channel), or at zeros; out[p] at pixel p's first dst channel of the tile. Weights packed as
// [tap][src channel][CV * lanes] (depthwise: one src channel, its own). The last vector
// keeps `valid` lanes (a group's last channels); the others all of theirs. A channel-rich
// layer runs its src channels in passes [i0, i1) (ChannelsLastPass): the first starts from the
// bias, the others from `sums` (the float partial sums, pixel p at p * CV * lanes), and all
// but the last leave theirs there.

// Pixels per channels-last tile of `cv` channel vectors: its accumulators, the cv weights and
// one broadcast in the registers, at most 8.
template <typename V>
constexpr int channels_last_pixels(int cv) {
  return std::min(8, (V::registers - cv - 1) / cv);
}
template <typename V>
constexpr int channels_last_max_vectors() { return V::registers >= 32 ? 4 : 3; }
// f(std::integral_constant<int, CV>{}) for the tile of cv channel vectors (1 .. MAX): every
// channels-last loop picks its tile's instantiation here, none above MAX compiled.
template <int MAX, typename F>
__attribute__((always_inline)) inline void with_channel_vectors(int cv, const F& f) {
  static_assert(MAX >= 1 && MAX <= 4, "channels-last tiles hold 1 to 4 vectors");
  if constexpr (MAX >= 4)
    if (cv == 4) return f(std::integral_constant<int, 4>{});
  if constexpr (MAX >= 3)
    if (cv == 3) return f(std::integral_constant<int, 3>{});
  if constexpr (MAX >= 2)
    if (cv == 2) return f(std::integral_constant<int, 2>{});
  f(std::integral_constant<int, 1>{});
}
// Src channels per pass of a channels-last tile: its weights within 64 KiB.
template <typename V>
constexpr int64_t channels_last_pass(int64_t taps, int cv) {
  return std::max<int64_t>(
      8, (64 * 1024) / (taps * cv * V::lanes * static_cast<int64_t>(sizeof(typename V::scalar))));
}

// `c`, a channel offset added to where the tile writes (depthwise: and reads), lets one tile's
// addresses serve several channel blocks (channels_last_block_tiles).
template <typename V, typename T, int P, int CV, bool DEPTHWISE>
CORR2D_TARGET void channels_last_tile(const T* const* src, int64_t taps, int64_t cin,
                                      int64_t i0, int64_t i1, const typename V::scalar* w,
                                      const typename V::scalar* bias, T* const* out, int valid,
                                      typename V::scalar* sums, int64_t c = 0) {
  using S = typename V::scalar;
  using R = typename V::reg;
  constexpr int L = V::lanes;
  R acc[P][CV];
  CORR2D_UNROLL
  for (int v = 0; v < CV; ++v) {
    const R b = V::load(bias + v * L);
    CORR2D_UNROLL
    for (int p = 0; p < P; ++p) acc[p][v] = i0 == 0 ? b : V::load(sums + (p * CV + v) * L);
  }
  const bool partial = valid < L;
  for (int64_t t = 0; t < taps; ++t) {
    const T* const* at = src + t * P;
    const S* wt = w + t * cin * CV * L;
    if constexpr (DEPTHWISE) {
      // Tap t of each channel, times the same channels of each pixel's src.
      R wv[CV];
      CORR2D_UNROLL
      for (int v = 0; v < CV; ++v) wv[v] = V::load(wt + v * L);
      CORR2D_UNROLL
      for (int p = 0; p < P; ++p) {
        CORR2D_UNROLL
        for (int v = 0; v < CV; ++v) {
          // The last vector of the last channels stops at them: past them may lie the end.
          const T* from = at[p] + c + v * L;
          const R x = v == CV - 1 && partial ? load_first_from<V>(from, valid)
                                             : V::template load_from<T>(from);
          acc[p][v] = V::fma(wv[v], x, acc[p][v]);
        }
      }
    } else {
      for (int64_t i = i0; i < i1; ++i) {
        R wv[CV];
        CORR2D_UNROLL
        for (int v = 0; v < CV; ++v) wv[v] = V::load(wt + i * CV * L + v * L);
        CORR2D_UNROLL
        for (int p = 0; p < P; ++p) {
          const R x = V::set1(static_cast<S>(at[p][i]));
          CORR2D_UNROLL
          for (int v = 0; v < CV; ++v) acc[p][v] = V::fma(wv[v], x, acc[p][v]);
        }
      }
    }
  }
  if (sums && i1 < cin) {  // (callers that run every src channel at once pass no sums)
    CORR2D_UNROLL
    for (int p = 0; p < P; ++p) {
      CORR2D_UNROLL
      for (int v = 0; v < CV; ++v) V::store(sums + (p * CV + v) * L, acc[p][v]);
    }
    return;
  }
  CORR2D_UNROLL
  for (int p = 0; p < P; ++p) {
    CORR2D_UNROLL
    for (int v = 0; v < CV; ++v) {
      T* to = out[p] + c + v * L;
      if (v < CV - 1 || !partial) {
        V::template store_to<T>(to, acc[p][v]);
      } else {
        alignas(64) S tmp[L];
        V::store(tmp, acc[p][v]);
        for (int k = 0; k < valid; ++k) to[k] = static_cast<T>(tmp[k]);
      }
    }
  }
}

// Where each tap reads from a pixel's window origin in an NHWC src: (kh * dh * W + kw * dw) * C.
inline std::vector<int64_t> channels_last_tap_offsets(const Geometry& g) {
  std::vector<int64_t> off(g.kernel_area());
  for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
    for (int64_t kw = 0; kw < g.cols.kernel; ++kw)
      off[kh * g.cols.kernel + kw] =
          (kh * g.rows.dilation * g.cols.input + kw * g.cols.dilation) * g.in_channels;
  return off;
}

// Pixel q of the batch in raster order (n, y, x), stepped from tile to tile: three 64-bit
// divisions a tile were a sixth of a 32-channel depthwise tile's time.
struct RasterCursor {
  int64_t n, y, x;
  RasterCursor(const Geometry& g, int64_t q)
      : n(q / g.output_plane()), y(q % g.output_plane() / g.cols.output), x(q % g.cols.output) {}
  void advance(const Geometry& g, int64_t by) {
    x += by;
    while (x >= g.cols.output) {
      x -= g.cols.output;
      if (++y == g.rows.output) y = 0, ++n;
    }
  }
};

// Where the P pixels of a tile from q0 (at `at`, pixels of the batch in raster order (n, y, x))
// write, `out` (past p1: `sink`), and the addresses each of its taps reads, `reads[tap * P +
// p]` (in the padding: `zeros`), channel offsets c_src and c_dst added. A pixel whose window
// lies inside the image (most of them) reads at its window's origin plus `tap_off`
// (channels_last_tap_offsets): bounds tested tap by tap made this setup cost a 32-channel
// depthwise tile more than its sums. A tile whose pixels all lie in one row with their windows
// inside (most tiles of a wide map) is one origin and a fixed step: the per-pixel version of
// that case was still half a depthwise tile's time (32 channels on 112x112, Zen 4).
template <int P, typename T>
inline void locate_channels_last_tile(const Geometry& g, const DstLayout& dl, const T* src,
                                      T* dst, const T* zeros, T* sink, int64_t q0, int64_t p1,
                                      const RasterCursor& at, int64_t c_src, int64_t c_dst,
                                      const int64_t* tap_off, const T** reads, T** out) {
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t C = g.in_channels, W = cols.output;
  const int64_t taps = g.kernel_area();
  const int64_t reach_r = (rows.kernel - 1) * rows.dilation;
  const int64_t reach_c = (cols.kernel - 1) * cols.dilation;
  {
    const int64_t iy = at.y * rows.stride - rows.padding;
    const int64_t ix = at.x * cols.stride - cols.padding;
    if (q0 + P <= p1 && at.x + P <= W && iy >= 0 && iy + reach_r < rows.input && ix >= 0 &&
        ix + (P - 1) * cols.stride + reach_c < cols.input) {
      const T* origin = src + (at.n * g.input_plane() + iy * cols.input + ix) * C + c_src;
      const int64_t step = cols.stride * C;
      for (int64_t t = 0; t < taps; ++t) {
        const T* o = origin + tap_off[t];
        for (int p = 0; p < P; ++p) reads[t * P + p] = o + p * step;
      }
      T* first = dst + at.n * dl.image + dl.offset + at.y * dl.row + at.x * dl.col + c_dst;
      for (int p = 0; p < P; ++p) out[p] = first + p * dl.col;
      return;
    }
  }
  int64_t iy[P], ix[P];
  const T* src_n[P];
  int64_t n = at.n, y = at.y, x = at.x;
  for (int p = 0; p < P; ++p) {
    // Past p1 the tile repeats its last pixel (reads stay inside) and writes to the sink.
    iy[p] = y * rows.stride - rows.padding;
    ix[p] = x * cols.stride - cols.padding;
    src_n[p] = src + n * g.input_plane() * C;
    out[p] = q0 + p < p1 ? dst + n * dl.image + dl.offset + y * dl.row + x * dl.col + c_dst
                         : sink;
    if (q0 + p + 1 < p1 && ++x == W) {
      x = 0;
      if (++y == rows.output) y = 0, ++n;
    }
  }
  for (int p = 0; p < P; ++p) {
    if (iy[p] >= 0 && iy[p] + reach_r < rows.input && ix[p] >= 0 &&
        ix[p] + reach_c < cols.input) {
      const T* origin = src_n[p] + (iy[p] * cols.input + ix[p]) * C + c_src;
      for (int64_t t = 0; t < taps; ++t) reads[t * P + p] = origin + tap_off[t];
      continue;
    }
    for (int64_t kh = 0; kh < rows.kernel; ++kh)
      for (int64_t kw = 0; kw < cols.kernel; ++kw) {
        const int64_t r = iy[p] + kh * rows.dilation, c = ix[p] + kw * cols.dilation;
        const bool inside = r >= 0 && r < rows.input && c >= 0 && c < cols.input;
        reads[(kh * cols.kernel + kw) * P + p] =
            (inside ? src_n[p] + (r * cols.input + c) * C : zeros) + c_src;
      }
  }
}

// The addresses of every tile of a chunk of pixels [p0, p1) at src channel c_src (dst channel
// 0), found once for every pass of src channels and every block of dst channels that runs
// over the chunk: found per tile, pass and block, they were a twentieth of a 256->256 3x3
// forward on 14x14 maps, whose tiles cross rows and so take the per-pixel setup.
template <typename T>
struct ChunkTiles {
  int64_t p0 = -1, p1 = -1, c_src = -1;
  int pixels = 0;  // P, which depends on the tile's vectors (a group's last block may have fewer)
  std::vector<const T*> reads;  // tile j's reads[tap * P + p] from j * taps * P
  std::vector<T*> out;          // tile j's pixels from j * P
};

// The pixels [p0, p1) of the batch in raster order (n, y, x), P a tile (fewer at the end: the
// others read zeros and write to `sink`, which holds every dst channel and a tile's more),
// channel offsets c_src and c_dst. A tile's pixels may lie in different images, so that small
// maps fill it (1x1 maps, one pixel an image, left 5 of 6 pixels idle when tiles stayed within
// an image).
template <typename V, typename T, int CV>
CORR2D_TARGET void channels_last_tiles(const Geometry& g, const DstLayout& dl, const T* src,
                                       T* dst, const T* zeros, T* sink, int64_t p0,
                                       int64_t p1, int64_t c_src, int64_t c_dst,
                                       const typename V::scalar* w,
                                       const typename V::scalar* bias, int valid,
                                       ChunkTiles<T>& tiles) {
  constexpr int P = channels_last_pixels<V>(CV);
  const int64_t taps = g.kernel_area(), cin = g.in_channels_per_group();
  const int64_t count = (p1 - p0 + P - 1) / P;
  if (tiles.p0 != p0 || tiles.p1 != p1 || tiles.c_src != c_src || tiles.pixels != P) {
    const std::vector<int64_t> tap_off = channels_last_tap_offsets(g);
    tiles.reads.resize(count * taps * P);
    tiles.out.resize(count * P);
    RasterCursor at(g, p0);
    for (int64_t j = 0; j < count; ++j, at.advance(g, P))
      locate_channels_last_tile<P>(g, dl, src, dst, zeros, sink, p0 + j * P, p1, at, c_src, 0,
                                   tap_off.data(), tiles.reads.data() + j * taps * P,
                                   tiles.out.data() + j * P);
    tiles.p0 = p0, tiles.p1 = p1, tiles.c_src = c_src, tiles.pixels = P;
  }
  // Src channels in passes whose weights (taps x channels x CV vectors) stay in L1 and L2
  // while every tile of the chunk reads them: a 512->512 3x3 layer's 1.2 MiB of a block's
  // weights, streamed from L2 by each tile of 6 pixels, bounded its forward on 7x7 images.
  using S = typename V::scalar;
  const int64_t pass = channels_last_pass<V>(taps, CV);
  std::vector<S> sums(pass < cin ? count * P * CV * V::lanes : 0);
  for (int64_t i0 = 0; i0 < cin; i0 += pass) {
    const int64_t i1 = std::min(cin, i0 + pass);
    for (int64_t j = 0; j < count; ++j) {
      S* at_sums = sums.empty() ? nullptr : sums.data() + j * P * CV * V::lanes;
      channels_last_tile<V, T, P, CV, false>(tiles.reads.data() + j * taps * P, taps, cin, i0,
                                             i1, w, bias, tiles.out.data() + j * P, valid,
                                             at_sums, c_dst);
    }
  }
}

// The pixels [p0, p1) as above, each tile through the channel blocks [u0, u1) of CV vectors
// (the last may have fewer) of a depthwise layer, or of an ungrouped one whose weights are
// few (ChannelsLastPlan::blocks_inside_tiles), so that the tile's addresses serve every block:
// per block they cost as much as a depthwise tile's 9 multiply-adds a lane (192 channels on
// 28x28: 2.0x oneDNN's time), and half a 3-channel stem's 27. `sink` holds every channel.
template <typename V, typename T, int CV, bool DEPTHWISE>
CORR2D_TARGET void channels_last_block_tiles(const Geometry& g, const DstLayout& dl,
                                             const ChannelsLastPlan& plan, const T* src, T* dst,
                                             const T* zeros, T* sink, int64_t p0, int64_t p1,
                                             int64_t u0, int64_t u1,
                                             const typename V::scalar* w,
                                             const typename V::scalar* bias) {
  constexpr int P = channels_last_pixels<V>(CV);
  constexpr int L = V::lanes;
  const int64_t taps = g.kernel_area(), cin = g.in_channels_per_group();
  std::vector<const T*> reads(taps * P);
  const std::vector<int64_t> tap_off = channels_last_tap_offsets(g);
  T* out[P];
  RasterCursor at(g, p0);
  for (int64_t q0 = p0; q0 < p1; q0 += P, at.advance(g, P)) {
    locate_channels_last_tile<P>(g, dl, src, dst, zeros, sink, q0, p1, at, 0, 0,
                                 tap_off.data(), reads.data(), out);
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t v0 = plan.first_vector(u);
      const int valid = plan.valid_lanes(u);
      const typename V::scalar* wb = w + v0 * L * taps * cin;  // the block's [tap][i][nv * L]
      const typename V::scalar* bb = bias + v0 * L;
      const int64_t c = v0 * L;
      // P pixels fit the registers of CV vectors, and so of fewer.
      with_channel_vectors<CV>(plan.vectors_of(u), [&](auto cv) {
        channels_last_tile<V, T, P, decltype(cv)::value, DEPTHWISE>(
            reads.data(), taps, cin, 0, cin, wb, bb, out, valid, nullptr, c);
      });
    }
  }
}

// An L x L block transposed in registers: lane k of v[e] becomes lane e of v[k]. log2(L)
// rounds, each interleaving the vectors L / 2 apart (a perfect shuffle of the rows).
template <typename V>
CORR2D_TARGET __attribute__((always_inline)) inline void transpose_lanes(typename V::reg* v) {
  using R = typename V::reg;
  constexpr int L = V::lanes;
  CORR2D_UNROLL
  for (int round = 1; round < L; round *= 2) {
    R t[L];
    CORR2D_UNROLL
    for (int k = 0; k < L; k += 2) {
      t[k] = V::interleave_low(v[k / 2], v[k / 2 + L / 2]);
      t[k + 1] = V::interleave_high(v[k / 2], v[k / 2 + L / 2]);
    }
    CORR2D_UNROLL
    for (int k = 0; k < L; ++k) v[k] = t[k];
  }
}

// v[k] = the first n elements (all L unless MASKED) from p + k * apart, for the first `rows`
// k; zeros for the others, which are not read.
template <typename V, bool MASKED, typename T>
CORR2D_TARGET __attribute__((always_inline)) inline void load_rows(typename V::reg* v,
                                                                   const T* p, int64_t apart,
                                                                   int rows, int n) {
  CORR2D_UNROLL
  for (int k = 0; k < V::lanes; ++k)
    v[k] = k < rows ? load_lanes<V, MASKED>(p + k * apart, n) : V::zero();
}

// Dst channels [j0, j0 + L) of a channels-last weight block, lanes of its `width`-element
// packed rows, through the runs `wr` describes (plan.h: WeightRuns). `first` is channel j0's
// element (0, 0), the channels `apart` apart, of which the first `rows` exist (the others
// pack as zeros). Each L elements of L channels' runs are L vector loads, a transpose and L
// vector stores: copied element by element, each strided load waited on its cache line (a
// 512->512 3x3 forward's dst channels lie 18 KiB apart, every other one in the same set of a
// 32 KiB 8-way L1), and packing took a fifth of the forward on 7x7 maps.
template <typename V, typename T>
CORR2D_TARGET void pack_runs_transposed(const WeightRuns& wr, const T* first, int64_t apart,
                                        int rows, int64_t width, typename V::scalar* out) {
  using R = typename V::reg;
  constexpr int L = V::lanes;
  for (int64_t r = 0; r < wr.runs; ++r) {
    const T* run = first + r * wr.run_stride + wr.start;
    const int64_t row_r = wr.row0 + r * wr.row_step;
    int64_t a = 0, b = 0;  // e / minor and e % minor, stepped: no division per element
    for (int64_t e0 = 0; e0 < wr.length; e0 += L) {
      const int n = static_cast<int>(std::min<int64_t>(L, wr.length - e0));
      R v[L];
      if (n == L) load_rows<V, false>(v, run + e0, apart, rows, n);
      else load_rows<V, true>(v, run + e0, apart, rows, n);
      transpose_lanes<V>(v);
      CORR2D_UNROLL
      for (int k = 0; k < L; ++k) {
        if (k < n) V::store(out + (row_r + a * wr.major_step + b * wr.minor_step) * width, v[k]);
        if (++b == wr.minor) b = 0, ++a;
      }
    }
  }
}

// A channels-last weight block: the `real` dst channels from `first`, `apart` apart, each
// channel's (src channel i, tap (kh, kw)) at i * wl.src + kh * wl.tap_row + kw * wl.tap_col,
// packed as [tap][i][width] (zeros past `real`): through whole vectors where the layout allows
// (weight_runs, or dst channels adjacent: a stride-1 input gradient of an OHWI weight),
// element by element otherwise.
template <typename V, typename T>
CORR2D_TARGET void pack_channels_last_block(const Geometry& g, const WeightLayout& wl,
                                            const WeightRuns& wr, const T* first,
                                            int64_t apart, int64_t real, int64_t width,
                                            typename V::scalar* block) {
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  const int64_t cin = g.in_channels_per_group();
  if (apart != 1 && wr.length > 0) {
    for (int64_t j0 = 0; j0 < width; j0 += L)
      pack_runs_transposed<V>(wr, first + j0 * apart, apart,
                              static_cast<int>(std::clamp<int64_t>(real - j0, 0, L)), width,
                              block + j0);
    return;
  }
  // Src channel by src channel: the block's weights of one src channel (every dst channel
  // and tap) lie in a few cache lines, read once; tap by tap, a large weight's lines were read
  // from L2 once per tap. Each packed row is a vector copy where its dst channels are adjacent.
  for (int64_t i = 0; i < cin; ++i)
    for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
      for (int64_t kw = 0; kw < g.cols.kernel; ++kw) {
        S* to = block + ((kh * g.cols.kernel + kw) * cin + i) * width;
        const T* from = first + i * wl.src + kh * wl.tap_row + kw * wl.tap_col;
        int64_t j = 0;
        if (apart == 1) {
          copy_run<V>(to, from, real);  // zeros in the last vector's lanes past `real`
          j = round_up(real, L);
        }
        for (; j < real; ++j) to[j] = static_cast<S>(from[j * apart]);
        for (; j < width; ++j) to[j] = S(0);
      }
}

// dst = correlation of src with the weight (read through `wl`) + bias, in forward form, src
// NHWC and dst written through `dl` with contiguous channels (dl.channel == 1).
template <typename V, typename T>
void correlate_channels_last(const Geometry& g_in, const WeightLayout& wl_in,
                             const DstLayout& dl, const T* src, const T* w, const T* bias,
                             T* dst) {
  Geometry g = g_in;
  WeightLayout wl = wl_in;
  drop_padding_taps(g, wl);
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  constexpr int kMaxVectors = channels_last_max_vectors<V>();
  const ChannelsLastPlan plan(g, L, kMaxVectors, sizeof(S));
  const int64_t taps = g.kernel_area();
  const int64_t cin = g.in_channels_per_group(), cout = g.out_channels_per_group();
  const int64_t padded = plan.vectors * L;  // a group's dst channels, whole vectors
  const int64_t groups = plan.depthwise ? 1 : g.groups;

  // Weights as [group][block][tap][src channel][block's channels], zeros past a group's last
  // channel (depthwise: one group of every channel, one src channel each); biases likewise.
  const int64_t per_group = taps * cin * padded;
  auto packed = scratch<S>(groups * per_group);
  std::vector<S> biases(groups * padded, S(0));
  const WeightRuns runs = weight_runs(g, wl);
  at::parallel_for(0, groups * plan.group_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t grp = u / plan.group_blocks, blk = u % plan.group_blocks;
      const int64_t v0 = blk * plan.block_vectors;
      const int64_t nv = std::min(plan.block_vectors, plan.vectors - v0);
      S* block = packed.get() + grp * per_group + v0 * L * taps * cin;
      // The block's dst channels j (depthwise: channels) are `apart` elements apart in the
      // weight; past `real` of them, zeros.
      const int64_t width = nv * L;
      const int64_t real = std::clamp<int64_t>(
          (plan.depthwise ? g.out_channels : cout) - v0 * L, 0, width);
      const int64_t apart = plan.depthwise ? wl.group : wl.dst;
      const T* first = w + wl.offset + (plan.depthwise ? 0 : grp * wl.group) + v0 * L * apart;
      pack_channels_last_block<V>(g, wl, runs, first, apart, real, width, block);
    }
  });
  if (bias)
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t d = 0; d < (plan.depthwise ? g.out_channels : cout); ++d)
        biases[grp * padded + d] = static_cast<S>(bias[grp * cout + d]);
  // What a window reads where it lies in the padding: zeros for every src channel and one
  // vector more (a depthwise tile reads whole vectors from its first channel).
  const std::vector<T> zeros(g.in_channels + padded + L, T(0));

  at::parallel_for(0, plan.tasks, 1, [&](int64_t begin, int64_t end) {
    // A tile past the chunk's end writes here: every channel and a tile's more.
    std::vector<T> sink(std::max(padded, g.out_channels) + 4 * L);
    ChunkTiles<T> tiles;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t piece = task % plan.pieces;
      const int64_t p0 = task / plan.pieces * plan.chunk;
      const int64_t p1 = std::min(plan.pixels, p0 + plan.chunk);
      const int64_t u0 = piece * plan.blocks / plan.pieces;
      const int64_t u1 = (piece + 1) * plan.blocks / plan.pieces;
      if (plan.blocks_inside_tiles) {
        // Depthwise: channels v0 * L.. of src and dst; otherwise every src channel and the
        // block's dst channels.
        with_channel_vectors<kMaxVectors>(static_cast<int>(plan.block_vectors), [&](auto cv) {
          constexpr int CV = decltype(cv)::value;
          if (plan.depthwise)
            channels_last_block_tiles<V, T, CV, true>(g, dl, plan, src, dst, zeros.data(),
                                                      sink.data(), p0, p1, u0, u1,
                                                      packed.get(), biases.data());
          else
            channels_last_block_tiles<V, T, CV, false>(g, dl, plan, src, dst, zeros.data(),
                                                       sink.data(), p0, p1, u0, u1,
                                                       packed.get(), biases.data());
        });
        continue;
      }
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t grp = u / plan.group_blocks;
        const int64_t v0 = plan.first_vector(u);
        const int valid = plan.valid_lanes(u);
        const S* wb = packed.get() + grp * per_group + v0 * L * taps * cin;
        const S* bb = biases.data() + grp * padded + v0 * L;
        // The group's src channels and this block's dst channels.
        const int64_t c_src = grp * cin;
        const int64_t c_dst = grp * cout + v0 * L;
        with_channel_vectors<kMaxVectors>(plan.vectors_of(u), [&](auto cv) {
          channels_last_tiles<V, T, decltype(cv)::value>(g, dl, src, dst, zeros.data(),
                                                         sink.data(), p0, p1, c_src, c_dst, wb,
                                                         bb, valid, tiles);
        });
      }
    }
  });
}

// The dst columns [x0, x1) of an axis whose src columns x * stride + shift .. x * stride +
// shift + reach all lie inside the image (x0 = x1 when none do).
inline void columns_inside(const Axis& cols, int64_t shift, int64_t reach, int64_t& x0,
                           int64_t& x1) {
  x0 = 0;
  while (x0 < cols.output && x0 * cols.stride + shift < 0) ++x0;
  x1 = x0;
  while (x1 < cols.output && x1 * cols.stride + shift + reach < cols.input) ++x1;
}

// A channels-last weight-gradient tile's CV x K sums, held in `buf` at (k * CV + v) * lanes
// between row chunks.
template <typename V, int CV, int K>
CORR2D_TARGET __attribute__((always_inline)) inline void load_tile_sums(
    typename V::reg (&acc)[CV][K], const typename V::scalar* buf) {
  CORR2D_UNROLL
  for (int k = 0; k < K; ++k) {
    CORR2D_UNROLL
    for (int v = 0; v < CV; ++v) acc[v][k] = V::load(buf + (k * CV + v) * V::lanes);
  }
}
template <typename V, int CV, int K>
CORR2D_TARGET __attribute__((always_inline)) inline void store_tile_sums(
    const typename V::reg (&acc)[CV][K], typename V::scalar* buf) {
  CORR2D_UNROLL
  for (int k = 0; k < K; ++k) {
    CORR2D_UNROLL
    for (int v = 0; v < CV; ++v) V::store(buf + (k * CV + v) * V::lanes, acc[v][k]);
  }
}

// grad_output's pixels [p0, p0 + pixels) of the batch (NHWC, C channels), channels [c, c + nv
// * lanes) of which `valid` lanes of the last vector real, packed pixel after pixel, nv vectors
// a pixel, zeros in the other lanes. A pixel's channels lie C * sizeof(T) bytes apart (1 or 2
// KiB for ResNet's 256 and 512 channels), which puts a block's slices of a row chunk's pixels
// into a few cache sets: read in place by every tile of the block, they missed L1 and L2
// (Zen 3) and the channel-rich weight gradients ran 1.5-1.9x torch's time.
template <typename V, typename T>
CORR2D_TARGET void pack_grad_output_block(const T* gy, int64_t C, int64_t p0, int64_t pixels,
                                          int64_t c, int nv, int valid,
                                          typename V::scalar* out) {
  constexpr int L = V::lanes;
  for (int64_t p = 0; p < pixels; ++p) {
    const T* from = gy + (p0 + p) * C + c;
    typename V::scalar* to = out + p * nv * L;
    for (int v = 0; v < nv; ++v)
      V::store(to + v * L, v == nv - 1 && valid < L ? load_first_from<V>(from + v * L, valid)
                                                    : V::template load_from<T>(from + v * L));
  }
}

// The dst columns [begin, end) of a row of the tile below: grad_output's packed pixels from
// gy_row, src from `sp` (at column begin) `step` apart.
template <typename V, typename T, int CV, int K>
CORR2D_TARGET __attribute__((always_inline)) inline void weight_grad_run(
    typename V::reg (&acc)[CV][K], const typename V::scalar* gy_row, int64_t begin,
    int64_t end, const T* sp, int64_t step) {
  using R = typename V::reg;
  constexpr int L = V::lanes;
  for (int64_t x = begin; x < end; ++x, sp += step) {
    const typename V::scalar* gp = gy_row + x * CV * L;
    R gv[CV];
    CORR2D_UNROLL
    for (int v = 0; v < CV; ++v) gv[v] = V::load(gp + v * L);
    CORR2D_UNROLL
    for (int k = 0; k < K; ++k) {
      const R b = V::set1(static_cast<typename V::scalar>(sp[k]));
      CORR2D_UNROLL
      for (int v = 0; v < CV; ++v) acc[v][k] = V::fma(gv[v], b, acc[v][k]);
    }
  }
}

// Channels-last weight gradient: grad_w[o, i, (kh, kw)] = sum over (n, y, x) of gy[n, y, x, o]
// * src[n, y * sh + kh * dh - ph, x * sw + kw * dw - pw, i], vectorized along o (contiguous in
// NHWC), so no lane is summed across. A tile is CV vectors of a group's output channels x K
// src channels from i0, at one tap (depthwise layers: the tile below); its accumulators
// stay in registers over the rows [r0, r1) of the batch (r = n * H_out + y), loaded from and
// stored to `acc` ((k * CV + v) * lanes). grad_output is the block's, packed from row r0
// (pack_grad_output_block: CV vectors a pixel). A tap in the padding reads `zeros` (and is
// still multiplied: F.conv2d's inf or NaN in grad_output times a padding zero is NaN).
template <typename V, typename T, int CV, int K>
CORR2D_TARGET void channels_last_weight_grad_tile(const Geometry& g, const T* src,
                                                  const typename V::scalar* gy_block,
                                                  const T* zeros, int64_t r0, int64_t r1,
                                                  int64_t kh, int64_t kw, int64_t c_src,
                                                  typename V::scalar* acc_buf) {
  using S = typename V::scalar;
  using R = typename V::reg;
  constexpr int L = V::lanes;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t C_src = g.in_channels;
  const int64_t W = cols.output, H = rows.output;
  // The dst columns whose src column x * sw + kw * dw - pw lies inside the image.
  const int64_t shift = kw * cols.dilation - cols.padding;
  int64_t x0, x1;
  columns_inside(cols, shift, 0, x0, x1);
  R acc[CV][K];
  load_tile_sums<V>(acc, acc_buf);
  // (n, y) stepped: a 64-bit division a row took as long as a 7-wide row's multiply-adds.
  int64_t n = r0 / H, y = r0 % H;
  for (int64_t r = r0; r < r1; ++r, y = y + 1 == H ? (++n, 0) : y + 1) {
    const int64_t row = y * rows.stride + kh * rows.dilation - rows.padding;
    const S* gy_row = gy_block + (r - r0) * W * CV * L;
    // The row's dst columns in three runs: the left padding, the image, the right padding
    // (all padding where the tap's row is). (As an array of runs, zeroed by `rep stos` a row,
    // they were an eighth of the tile's time on 7-wide maps.)
    if (row < 0 || row >= rows.input) {
      weight_grad_run<V, T, CV, K>(acc, gy_row, 0, W, zeros, 0);
      continue;
    }
    weight_grad_run<V, T, CV, K>(acc, gy_row, 0, x0, zeros, 0);
    weight_grad_run<V, T, CV, K>(
        acc, gy_row, x0, x1,
        src + ((n * rows.input + row) * cols.input + shift + x0 * cols.stride) * C_src + c_src,
        cols.stride * C_src);
    weight_grad_run<V, T, CV, K>(acc, gy_row, x1, W, zeros, 0);
  }
  store_tile_sums<V>(acc, acc_buf);
}

// The depthwise case: CV vectors of channels x K taps of one kernel row (kh, kw0 .. kw0 + K - 1)
// a tile, so that each grad_output vector loaded serves K taps and the K x CV sums are
// independent chains. One tap a tile (as the channel-rich tile runs) read grad_output once per
// tap and chained every multiply-add of a vector on the one before: MobileNetV2's depthwise
// weight gradients ran 1.6-2.1x torch's time in channels_last (Zen 4). Sums at acc_buf
// ((k * CV + v) * lanes), held over the rows [r0, r1) of the batch; a tap in the padding reads
// `zeros` (and is still multiplied: grad_output's inf or NaN times a padding zero is NaN).
template <typename V, typename T, int CV, int K>
CORR2D_TARGET void channels_last_depthwise_weight_grad_tile(
    const Geometry& g, const T* src, const T* gy, const T* zeros, int64_t r0, int64_t r1,
    int64_t kh, int64_t kw0, int64_t c, typename V::scalar* acc_buf, int valid) {
  using R = typename V::reg;
  constexpr int L = V::lanes;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t C = g.in_channels;  // = g.out_channels
  const int64_t W = cols.output, H = rows.output;
  // Tap kw0 + k of dst column x reads src column x * sw + shift + k * dw. The columns where
  // every tap of the tile reads inside the image: [x0, x1).
  const int64_t shift = kw0 * cols.dilation - cols.padding;
  int64_t x0, x1;
  columns_inside(cols, shift, (K - 1) * cols.dilation, x0, x1);
  const bool partial = valid < L;
  R acc[CV][K];
  load_tile_sums<V>(acc, acc_buf);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / H, y = r % H;
    const int64_t row = y * rows.stride + kh * rows.dilation - rows.padding;
    const bool row_inside = row >= 0 && row < rows.input;
    const T* gy_row = gy + r * W * C + c;
    const T* src_row = row_inside ? src + (n * rows.input + row) * cols.input * C + c : zeros;
    for (int64_t x = 0; x < W; ++x) {
      const T* gp = gy_row + x * C;
      R gv[CV];
      CORR2D_UNROLL
      for (int v = 0; v < CV; ++v)
        gv[v] = v == CV - 1 && partial ? load_first_from<V>(gp + v * L, valid)
                                       : V::template load_from<T>(gp + v * L);
      const bool inside = row_inside && x >= x0 && x < x1;
      CORR2D_UNROLL
      for (int k = 0; k < K; ++k) {
        const int64_t col = x * cols.stride + shift + k * cols.dilation;
        const T* sp = inside || (row_inside && col >= 0 && col < cols.input)
                          ? src_row + col * C
                          : zeros;
        CORR2D_UNROLL
        for (int v = 0; v < CV; ++v) {
          const R xv = v == CV - 1 && partial ? load_first_from<V>(sp + v * L, valid)
                                              : V::template load_from<T>(sp + v * L);
          acc[v][k] = V::fma(gv[v], xv, acc[v][k]);
        }
      }
    }
  }
  store_tile_sums<V>(acc, acc_buf);
}

// Taps per depthwise weight-gradient tile of `cv` channel vectors: its sums, the cv grad_output
// vectors and one src vector in the registers, at most 7 (a 7x7 kernel's row).
template <typename V>
constexpr int channels_last_depthwise_weight_grad_k(int cv) {
  return std::min(7, (V::registers - cv - 1) / cv - 1);
}

// src channels per channels-last weight-gradient tile of `cv` output-channel vectors.
template <typename V>
constexpr int channels_last_weight_grad_k(int cv) {
  return std::min(8, (V::registers - cv - 1) / cv);
}

template <typename V, typename T>
void weight_grad_channels_last(const Geometry& g, const T* input, const T* grad_output,
                               T* grad_weight) {
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  // The output channels, cut as the forward cuts its dst channels.
  constexpr int kMaxVectors = channels_last_max_vectors<V>();
  const ChannelsLastPlan plan(g, L, kMaxVectors, sizeof(S));
  const int64_t taps = g.kernel_area();
  const int64_t cin = g.in_channels_per_group(), cout = g.out_channels_per_group();
  // A unit: one tile's weights, (block, tap, src channels [i0, i0 + k)): k = K for whole tiles of
  // src channels, fewer for the rest (depthwise: the block's own channels, taps [tap, tap + k)
  // of one kernel row).
  struct Unit {
    int64_t block, tap, i0;
    int k;
  };
  std::vector<Unit> units;
  for (int64_t b = 0; b < plan.blocks; ++b) {
    if (plan.depthwise) {
      // Each kernel row's taps in tiles of kd, the last of 3, 2 or 1 (the tiles built); the
      // unit's k sums are taps tap .. tap + k - 1.
      const int kd = channels_last_depthwise_weight_grad_k<V>(plan.vectors_of(b));
      for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
        for (int64_t kw = 0; kw < g.cols.kernel;) {
          int k = kd;
          for (const int narrower : {3, 2, 1})
            if (kw + k > g.cols.kernel) k = std::min(k, narrower);
          units.push_back({b, kh * g.cols.kernel + kw, 0, k});
          kw += k;
        }
      continue;
    }
    const int kmax = channels_last_weight_grad_k<V>(plan.vectors_of(b));
    // By src channels, then taps: an output channel's weights (src channel, tap) are then in
    // OIHW order across consecutive units.
    for (int64_t i0 = 0; i0 < cin;) {
      // The widest tile the src channels left fill: kmax, else 4, 2 or 1 (the tiles built).
      int k = kmax;
      for (const int narrower : {4, 2, 1})
        if (i0 + k > cin) k = std::min(k, narrower);
      for (int64_t t = 0; t < taps; ++t) units.push_back({b, t, i0, k});
      i0 += k;
    }
  }
  // Units are cut into groups whose accumulators (held across the row chunks) stay within a
  // bound, whatever the weight's size. A task runs a group's units over every row chunk of its
  // part of the batch, so each chunk of grad_output and src, read once from memory, serves all
  // of them while it is in L2.
  const int64_t unit_floats = 8 * plan.block_vectors * L;
  const int64_t unit_bytes = static_cast<int64_t>(sizeof(S)) * unit_floats;
  const int64_t count = static_cast<int64_t>(units.size());
  const int64_t groups = std::clamp<int64_t>(count * unit_bytes / (256 * 1024), 1, count);
  // Row parts, for a weight of few groups: with one part, each task streamed the whole of
  // grad_output and src for its few units (a 32->16 1x1 on 8x112x112 read them 4 times, 51 MB
  // for 3 M FMAs). Their number comes from the geometry alone (never the thread count), and
  // the parts' partial sums are added in part order, so results stay bitwise the same for any
  // thread count. A part has at least 4096 dst pixels; 16 groups x parts serve 16 threads.
  const int64_t total_rows = g.batch * g.rows.output;
  const int64_t parts = std::clamp<int64_t>(
      std::min<int64_t>(16 / groups, total_rows * g.cols.output / 4096), 1,
      std::max<int64_t>(1, total_rows));
  // Groups cut further, two tasks per thread in all; a weight's whole sum within a part lies
  // in one task, in row order, so this cut changes no result.
  const int64_t unit_tasks =
      std::clamp<int64_t>(std::max(groups, (2 * at::get_num_threads() + parts - 1) / parts), 1,
                          count);
  // Row chunks of a few hundred pixels: a chunk's grad_output and src stay in L2 while each of
  // a task's units runs over it.
  const std::vector<T> zeros(std::max<int64_t>(8, 4 * L), T(0));  // a padding pixel's src
  const int64_t chunk_rows = std::max<int64_t>(1, 512 / std::max<int64_t>(1, g.cols.output));
  // The sums of units [u0, u1), into the OIHW grad_weight (valid lanes only), output channel by
  // output channel over a few consecutive units of a block at a time: in memory order (a
  // unit's lanes are output channels, a whole plane of the weight apart; stored unit by unit,
  // every store of a large weight missed the cache and the TLB). sum(u, i): lane i of unit u's
  // sums.
  const auto store_sums = [&](int64_t u0, int64_t u1, const auto& sum) {
    for (int64_t ub = u0; ub < u1;) {
      const int64_t block = units[ub].block;
      int64_t ue = ub;
      while (ue < u1 && units[ue].block == block) ++ue;
      const int64_t grp = block / plan.group_blocks;
      const int64_t v0 = plan.first_vector(block);
      const int64_t nv = plan.vectors_of(block);
      const int64_t lanes = std::min(nv * L, plan.channels - v0 * L);  // the real ones
      const auto row_of = [&](int64_t j) {  // output channel v0 * L + j's weights
        return grad_weight + (plan.depthwise ? v0 * L + j : grp * cout + v0 * L + j) * cin * taps;
      };
      if (plan.depthwise) {  // one src channel, the unit's k taps in a row
        for (int64_t j = 0; j < lanes; ++j)
          for (int64_t u = ub; u < ue; ++u)
            for (int k = 0; k < units[u].k; ++k)
              row_of(j)[units[u].tap + k] = static_cast<T>(sum(u, k * nv * L + j));
        ub = ue;
        continue;
      }
      // The units of one i0 (its taps, consecutive) at a time, output channel by output
      // channel, src channel by src channel, so that the stores run along (i, t) and the sums
      // read (a few KiB) stay in L1. Unit by unit the stores jumped `taps` elements; this order
      // took the stores from 8 % to 7 % of a 512->512 3x3 weight gradient on 7x7 maps (Zen 3):
      // what is left is writing the 9.4 MiB weight itself.
      for (int64_t u = ub; u < ue;) {
        int64_t same = u;
        while (same < ue && units[same].i0 == units[u].i0) ++same;
        for (int64_t j = 0; j < lanes; ++j) {
          T* w_o = row_of(j);
          for (int k = 0; k < units[u].k; ++k)
            for (int64_t w = u; w < same; ++w)
              w_o[(units[u].i0 + k) * taps + units[w].tap] =
                  static_cast<T>(sum(w, k * nv * L + j));
        }
        u = same;
      }
      ub = ue;
    }
  };
  // With several parts, each part's sums: parts x count units, under 8 MiB (parts x groups
  // is at most 16, and a group's units hold under 512 KiB), whatever the weight's size. Left
  // uninitialized here: each task zeroes its own slice, in parallel and in its thread's cache,
  // not the calling thread serially (up to 8 MiB of page faults before any work starts).
  const std::unique_ptr<S[]> partial(parts > 1 ? new S[parts * count * unit_floats] : nullptr);
  at::parallel_for(0, parts * unit_tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t part = task / unit_tasks, ut = task % unit_tasks;
      const int64_t u0 = ut * count / unit_tasks, u1 = (ut + 1) * count / unit_tasks;
      const int64_t rows_begin = part * total_rows / parts;
      const int64_t rows_end = (part + 1) * total_rows / parts;
      std::vector<S> own(parts > 1 ? 0 : (u1 - u0) * unit_floats, S(0));
      std::vector<S> gy_block(
          plan.depthwise ? 0 : chunk_rows * g.cols.output * plan.block_vectors * L);
      S* const acc = parts > 1 ? partial.get() + (part * count + u0) * unit_floats : own.data();
      if (parts > 1) std::fill(acc, acc + (u1 - u0) * unit_floats, S(0));
      for (int64_t r0 = rows_begin; r0 < rows_end; r0 += chunk_rows) {
        const int64_t r1 = std::min(rows_end, r0 + chunk_rows);
        int64_t packed_block = -1;  // whose grad_output gy_block holds for this chunk
        for (int64_t u = u0; u < u1; ++u) {
          const Unit& un = units[u];
          const int64_t grp = un.block / plan.group_blocks;
          const int64_t v0 = plan.first_vector(un.block);
          const int valid = plan.valid_lanes(un.block);
          const int64_t kh = un.tap / g.cols.kernel, kw = un.tap % g.cols.kernel;
          const int64_t c_src = plan.depthwise ? v0 * L : grp * cin + un.i0;
          if (!plan.depthwise && un.block != packed_block) {
            pack_grad_output_block<V>(grad_output, g.out_channels, r0 * g.cols.output,
                                      (r1 - r0) * g.cols.output, grp * cout + v0 * L,
                                      plan.vectors_of(un.block), valid, gy_block.data());
            packed_block = un.block;
          }
          S* a = acc + (u - u0) * unit_floats;
          with_channel_vectors<kMaxVectors>(plan.vectors_of(un.block), [&](auto cv) {
            constexpr int CV = decltype(cv)::value;
            constexpr int K = channels_last_weight_grad_k<V>(CV);  // the widest tile
            const auto tile = [&](auto k) {
              channels_last_weight_grad_tile<V, T, CV, decltype(k)::value>(
                  g, input, gy_block.data(), zeros.data(), r0, r1, kh, kw, c_src, a);
            };
            using One = std::integral_constant<int, 1>;
            if (plan.depthwise) {
              constexpr int KD = channels_last_depthwise_weight_grad_k<V>(CV);
              const auto row_tile = [&](auto k) {
                channels_last_depthwise_weight_grad_tile<V, T, CV, decltype(k)::value>(
                    g, input, grad_output, zeros.data(), r0, r1, kh, kw, c_src, a, valid);
              };
              if (un.k == KD) row_tile(std::integral_constant<int, KD>{});
              else if (un.k == 3) row_tile(std::integral_constant<int, (KD < 3 ? KD : 3)>{});
              else if (un.k == 2) row_tile(std::integral_constant<int, (KD < 2 ? KD : 2)>{});
              else row_tile(One{});
            } else if (un.k == 1) tile(One{});
            else if (un.k == 2) tile(std::integral_constant<int, 2>{});
            else if (un.k == 4 && K != 4) tile(std::integral_constant<int, 4>{});
            else tile(std::integral_constant<int, K>{});
          });
        }
      }
      if (parts == 1)
        store_sums(u0, u1, [&](int64_t u, int64_t i) { return acc[(u - u0) * unit_floats + i]; });
    }
  });
  if (parts == 1) return;
  // The parts' sums added in part order, the units cut among the threads.
  at::parallel_for(0, count, 1, [&](int64_t u0, int64_t u1) {
    store_sums(u0, u1, [&](int64_t u, int64_t i) {
      S s = partial[u * unit_floats + i];
      for (int64_t p = 1; p < parts; ++p) s += partial[(p * count + u) * unit_floats + i];
      return s;
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Weight gradient: grad_w[o, i, t] = sum over (n, y, x) of gy[n, o, y, x] * slab(i, y, x, t).
// Micro-kernel: OCB output channels x TB taps of accumulators, carried across every pixel
// vector of a row block, then stored back into the task's lane buffer; the lanes are summed (in
// a fixed order) once per task. Slot v reads the slab at in + in_off[v] and grad_output itself
// (of type TG, converted as it is loaded) at gy + gy_off[v] for channel o0.
//
// MASKED is for the slots at the right edge, of which only `valid` lanes are pixels: both
// operands are loaded with their other lanes zero and their memory unread (past the row's end
// lie the next row or channel, which must not be added, or the end of the tensor).
template <typename V, typename TG, int OCB, int TB, bool MASKED>
CORR2D_TARGET void weight_grad_tile(const typename V::scalar* in, const int64_t* in_off,
                                    const TG* gy, const int64_t* gy_off,
                                    const int* valid, int nv, int64_t gy_o_stride,
                                    const int64_t* tap_off, typename V::scalar* lanes,
                                    int64_t lanes_o_stride) {
  using S = typename V::scalar;
  using R = typename V::reg;
  constexpr int L = V::lanes;
  R acc[OCB][TB];
  CORR2D_UNROLL
  for (int j = 0; j < OCB; ++j)
    CORR2D_UNROLL
    for (int t = 0; t < TB; ++t) acc[j][t] = V::load(lanes + j * lanes_o_stride + t * L);
  int64_t taps[TB];
  CORR2D_UNROLL
  for (int t = 0; t < TB; ++t) taps[t] = tap_off[t];
  for (int v = 0; v < nv; ++v) {
    const S* x0 = in + in_off[v];
    const TG* g0 = gy + gy_off[v];
    const int keep = MASKED ? valid[v] : L;
    if constexpr (TB <= OCB) {
      R x[TB];
      CORR2D_UNROLL
      for (int t = 0; t < TB; ++t) x[t] = load_lanes<V, MASKED>(x0 + taps[t], keep);
      CORR2D_UNROLL
      for (int j = 0; j < OCB; ++j) {
        const R gv = load_lanes<V, MASKED>(g0 + j * gy_o_stride, keep);
        CORR2D_UNROLL
        for (int t = 0; t < TB; ++t) acc[j][t] = V::fma(gv, x[t], acc[j][t]);
      }
    } else {
      R gv[OCB];
      CORR2D_UNROLL
      for (int j = 0; j < OCB; ++j) gv[j] = load_lanes<V, MASKED>(g0 + j * gy_o_stride, keep);
      CORR2D_UNROLL
      for (int t = 0; t < TB; ++t) {
        const R x = load_lanes<V, MASKED>(x0 + taps[t], keep);
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) acc[j][t] = V::fma(gv[j], x, acc[j][t]);
      }
    }
  }
  CORR2D_UNROLL
  for (int j = 0; j < OCB; ++j)
    CORR2D_UNROLL
    for (int t = 0; t < TB; ++t) V::store(lanes + j * lanes_o_stride + t * L, acc[j][t]);
}

template <typename V, typename TG, int OCB, int TB>
void weight_grad_block(const SlotTable& ws, const typename V::scalar* in,
                       const TG* gy, int64_t gy_o_stride,
                       const int64_t* tap_off, typename V::scalar* lanes,
                       int64_t lanes_o_stride) {
  weight_grad_tile<V, TG, OCB, TB, false>(in, ws.in_off.data(), gy, ws.out_off.data(),
                                      ws.valid.data(), ws.full, gy_o_stride, tap_off, lanes,
                                      lanes_o_stride);
  const int rest = ws.size() - ws.full;
  if (rest > 0)
    weight_grad_tile<V, TG, OCB, TB, true>(in, ws.in_off.data() + ws.full, gy,
                                           ws.out_off.data() + ws.full, ws.valid.data() + ws.full,
                                       rest, gy_o_stride, tap_off, lanes, lanes_o_stride);
}

// The last `rest` (< TB) taps, in one tile of exactly that many.
template <typename V, typename TG, int OCB, int TB>
void weight_grad_rest(int64_t rest, const SlotTable& ws, const typename V::scalar* in,
                      const TG* gy, int64_t gy_o_stride,
                      const int64_t* tap_off, typename V::scalar* lanes,
                      int64_t lanes_o_stride) {
  if constexpr (TB > 1) {
    if (rest == TB - 1) {
      weight_grad_block<V, TG, OCB, TB - 1>(ws, in, gy, gy_o_stride, tap_off, lanes, lanes_o_stride);
      return;
    }
    weight_grad_rest<V, TG, OCB, TB - 1>(rest, ws, in, gy, gy_o_stride, tap_off, lanes,
                                     lanes_o_stride);
  }
}

// Every tap of OCB output channels and one input channel: TB taps at a time, then the rest.
template <typename V, typename TG, int OCB>
void weight_grad_taps(const SlotTable& ws, const typename V::scalar* in,
                      const TG* gy, int64_t gy_o_stride,
                      const int64_t* tap_off, int64_t taps, typename V::scalar* lanes,
                      int64_t lanes_o_stride) {
  constexpr int TB = weight_grad_taps_per_tile<V>(OCB);
  constexpr int L = V::lanes;
  int64_t t = 0;
  for (; t + TB <= taps; t += TB)
    weight_grad_block<V, TG, OCB, TB>(ws, in, gy, gy_o_stride, tap_off + t, lanes + t * L,
                                  lanes_o_stride);
  if (t < taps)
    weight_grad_rest<V, TG, OCB, TB>(taps - t, ws, in, gy, gy_o_stride, tap_off + t, lanes + t * L,
                                 lanes_o_stride);
}

// The lanes of one accumulator, added pairwise in a fixed order.
template <typename S>
S sum_lanes(const S* l, int n) {
  if (n == 1) return l[0];
  return sum_lanes(l, n / 2) + sum_lanes(l + n / 2, n / 2);
}

template <typename V, typename T>
void weight_grad(const Geometry& g, const T* input, const T* grad_output, T* grad_weight) {
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  constexpr bool kSameType = std::is_same_v<T, S>;
  const WeightGradPlan plan(g, L, sizeof(S), kSameType);
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  const int64_t taps = g.kernel_area();
  const int64_t w_numel = g.out_channels * cin * taps;
  const int64_t* tap_off = plan.tap_off.data();
  // grad_output is read in place, through the slots' dst offsets: channel o0 + j of the
  // block's first image at j * its plane from the block's first pixel.
  const int64_t gy_o_stride = g.output_plane();
  // Chunk partials only when there are several chunks, that is when the weight is small.
  std::vector<S> partial(plan.chunks > 1 ? plan.chunks * w_numel : 0);

  // Every block's input rows (every input channel), staged once for all weight blocks, when
  // the plan shares them.
  const int64_t cs = plan.slab.channel_stride;
  const auto staged = plan.shared_stage
                          ? stage_every_block<V, T>(g, plan.slab, plan.blocks, input, plan.block_input)
                          : nullptr;

  at::parallel_for(0, plan.tasks(), 1, [&](int64_t begin, int64_t end) {
    // Per thread, bounded by the plan's block sizes, not by the weight.
    std::vector<S> slab(plan.shared_stage || plan.slab.in_place ? 0 : plan.slab.size(plan.ic_block));
    std::vector<S> lanes(plan.oc_block * plan.ic_block * taps * L);
    // Slab offsets of the (input channel, tap) pairs of a weight block.
    std::vector<int64_t> pair_off(plan.ic_block * taps);
    for (int64_t i = 0; i < plan.ic_block; ++i)
      for (int64_t t = 0; t < taps; ++t)
        pair_off[i * taps + t] = i * cs + tap_off[t];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % plan.chunks;
      const int64_t wblock = task / plan.chunks;
      const int64_t ib = wblock % plan.ic_blocks;
      const int64_t ob = (wblock / plan.ic_blocks) % plan.oc_blocks;
      const int64_t grp = wblock / (plan.ic_blocks * plan.oc_blocks);
      const int64_t oc0 = ob * plan.oc_block, oc_n = std::min(plan.oc_block, cout - oc0);
      const int64_t ic0 = ib * plan.ic_block, ic_n = std::min(plan.ic_block, cin - ic0);
      const int64_t l_o_stride = ic_n * taps * L;
      std::fill(lanes.begin(), lanes.end(), S(0));
      const int64_t b_end = std::min(plan.blocks.count, (chunk + 1) * plan.blocks_per_chunk);
      for (int64_t b = chunk * plan.blocks_per_chunk; b < b_end; ++b) {
        const Blocks::Block blk = plan.blocks[b];
        const SlotTable& ws = plan.slots.of(blk, plan.blocks);
        const int64_t c_first = g.first_input_channel(grp) + ic0;
        const int64_t o_first = grp * cout + oc0;
        const T* block_gy = grad_output + g.output_offset(blk.n0, o_first) + blk.y0 * g.cols.output;
        const S* block_in = slab.data();
        if constexpr (kSameType)
          if (plan.slab.in_place) block_in = input + g.input_offset(blk.n0, c_first) + blk.y0 * g.cols.input;
        if (plan.shared_stage)
          block_in = staged.get() + b * plan.block_input + c_first * cs;
        else if (!plan.slab.in_place)
          stage<V, T>(g, plan.slab, input, blk, c_first, c_first + ic_n, slab.data());
        // The tiles run over (input channel, tap) pairs as one axis: the lanes of pair (i, t)
        // are adjacent as taps are, and the pair's slab offset is i * channel_stride plus the
        // tap's. So a 1x1 kernel fills a tile with input channels instead of leaving it one tap
        // wide, and 3x3 taps are not split into a full tile and a short one per channel.
        const int64_t pairs = ic_n * taps;
        const int64_t* off = pair_off.data();
        for (int64_t o = 0; o < oc_n; o += kMaxOcb) {
          const T* gy = block_gy + o * gy_o_stride;
          const S* in = block_in;
          S* l = lanes.data() + o * pairs * L;
          switch (std::min<int64_t>(kMaxOcb, oc_n - o)) {
            case 4: weight_grad_taps<V, T, 4>(ws, in, gy, gy_o_stride, off, pairs, l, l_o_stride); break;
            case 3: weight_grad_taps<V, T, 3>(ws, in, gy, gy_o_stride, off, pairs, l, l_o_stride); break;
            case 2: weight_grad_taps<V, T, 2>(ws, in, gy, gy_o_stride, off, pairs, l, l_o_stride); break;
            default: weight_grad_taps<V, T, 1>(ws, in, gy, gy_o_stride, off, pairs, l, l_o_stride); break;
          }
        }
      }
      for (int64_t o = 0; o < oc_n; ++o)
        for (int64_t i = 0; i < ic_n; ++i)
          for (int64_t t = 0; t < taps; ++t) {
            const S sum = sum_lanes(lanes.data() + ((o * ic_n + i) * taps + t) * L, L);
            const int64_t e = g.weight_offset(grp * cout + oc0 + o, ic0 + i) + t;
            if (plan.chunks > 1)
              partial[chunk * w_numel + e] = sum;
            else
              grad_weight[e] = static_cast<T>(sum);
          }
    }
  });
  if (plan.chunks > 1) {
    for (int64_t e = 0; e < w_numel; ++e) {
      S sum = partial[e];
      for (int64_t c = 1; c < plan.chunks; ++c) sum += partial[c * w_numel + e];
      grad_weight[e] = static_cast<T>(sum);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Depthwise forward and weight gradient at stride 1 or 2, plane by plane (plan.h: SrcPlanes).
//
// Contiguous depthwise layers on small maps (MobileNetV2's 576 channels on 14x14 and 960 on
// 7x7) spent more on the general path's setup and staging, or on copies to NHWC and back, than
// on their 9 multiply-adds a pixel. Here a task stages one src plane at a time (padded, its
// rows split into column phases) and runs every tap from it: a tap of a vector of dst pixels
// is one load at a fixed offset.

// Src plane `src` into `staged`: the rows inside the image, padded and phase-split; the rows
// outside it are left as they are (zero).
template <typename V, typename T>
CORR2D_TARGET void stage_src_plane(const Geometry& g, const SrcPlanes& sp, const T* src,
                                   typename V::scalar* staged) {
  const Axis& cols = g.cols;
  const RowSplit split(2, sp.split_len, cols.padding, cols.input);
  const int64_t y1 = std::min(g.rows.input, sp.rows - g.rows.padding);
  for (int64_t y = std::max<int64_t>(0, -g.rows.padding); y < y1; ++y) {
    typename V::scalar* out = staged + (y + g.rows.padding) * sp.row_stride;
    const T* row = src + y * cols.input;
    if (sp.stride == 2) {
      split_in_two<V>(split, row, out, sp.phase_len);
    } else {
      const int64_t begin = std::min(cols.padding, sp.phase_len);
      const int64_t end = std::min(cols.padding + cols.input, sp.phase_len);
      stage_row<V, T>(out, row - cols.padding, begin, end, sp.phase_len);
    }
  }
}

// RB dst rows of one vector of columns: `base` the staged plane at the first one's origin,
// `out` its first pixel, n of its lanes kept. RB independent sums, so that the FMAs' latency
// overlaps.
template <typename V, typename T, int RB>
CORR2D_TARGET __attribute__((always_inline)) inline void depthwise_rows(
    const typename V::scalar* base, int64_t rows_apart, const int64_t* tap_off, int64_t taps,
    const typename V::scalar* w, typename V::scalar bias, T* out, int64_t out_row, int n) {
  typename V::reg acc[RB];
  CORR2D_UNROLL
  for (int i = 0; i < RB; ++i) acc[i] = V::set1(bias);
  for (int64_t t = 0; t < taps; ++t) {
    const typename V::reg wt = V::set1(w[t]);
    const typename V::scalar* p = base + tap_off[t];
    CORR2D_UNROLL
    for (int i = 0; i < RB; ++i) acc[i] = V::fma(wt, V::load(p + i * rows_apart), acc[i]);
  }
  CORR2D_UNROLL
  for (int i = 0; i < RB; ++i) store_first_to<V, T>(out + i * out_row, acc[i], n);
}

template <typename V, typename T>
CORR2D_TARGET void depthwise_forward_plane(const Geometry& g, const SrcPlanes& sp, const T* src,
                                           const typename V::scalar* w,
                                           typename V::scalar bias,
                                           typename V::scalar* staged, T* out) {
  constexpr int L = V::lanes;
  constexpr int RB = 4;
  stage_src_plane<V, T>(g, sp, src, staged);
  const int64_t ow = g.cols.output, taps = g.kernel_area();
  const int64_t rows_apart = g.rows.stride * sp.row_stride;
  const int64_t* tap_off = sp.tap_off.data();
  for (int64_t m = 0; m < sp.chunks; ++m) {
    const int n = static_cast<int>(std::min<int64_t>(L, ow - m * L));
    int64_t y = 0;
    // (A macro, not a lambda: a lambda would lack the target attribute to inline the tile.)
#define CORR2D_DEPTHWISE_ROWS(K)                                                           \
  depthwise_rows<V, T, K>(staged + y * rows_apart + m * L, rows_apart, tap_off, taps, w, bias, \
                          out + y * ow + m * L, ow, n)
    for (; y + RB <= g.rows.output; y += RB) CORR2D_DEPTHWISE_ROWS(RB);
    switch (g.rows.output - y) {  // the last rows, as one tile
      case 3: CORR2D_DEPTHWISE_ROWS(3); break;
      case 2: CORR2D_DEPTHWISE_ROWS(2); break;
      case 1: CORR2D_DEPTHWISE_ROWS(1); break;
      default: break;
    }
#undef CORR2D_DEPTHWISE_ROWS
  }
}

// Every (image, channel) plane of a depthwise layer, a few a task: run(plane, c, w, staged)
// with w channel c's taps converted to S and `staged` the task's buffer of `staged_size`
// elements, zeroed once (what a plane kernel does not write stays zero).
template <typename S, typename T, typename Run>
void for_each_plane(const Geometry& g, const T* weight, int64_t staged_size, const Run& run) {
  const int64_t taps = g.kernel_area();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.input_plane()));
  at::parallel_for(0, g.batch * g.in_channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<S> staged(staged_size, S(0));
    std::vector<S> w(taps);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % g.in_channels;
      for (int64_t t = 0; t < taps; ++t) w[t] = static_cast<S>(weight[c * taps + t]);
      run(plane, c, w.data(), staged.data());
    }
  });
}

template <typename V, typename T>
void depthwise_forward_by_planes(const Geometry& g, const T* input, const T* weight,
                                 const T* bias, T* output) {
  using S = typename V::scalar;
  const SrcPlanes sp(g, V::lanes);
  for_each_plane<S>(g, weight, sp.size(), [&](int64_t plane, int64_t c, const S* w, S* staged) {
    depthwise_forward_plane<V, T>(g, sp, input + plane * g.input_plane(), w,
                                  bias ? static_cast<S>(bias[c]) : S(0), staged,
                                  output + plane * g.output_plane());
  });
}

// One plane's terms of grad_w[c, t] = sum over (n, y, x) of gy[n, c, y, x] * staged(n, c)[tap t
// of (y, x)], added lane by lane into `sums` (L a tap), TB taps' at a time in registers. A
// row's last vector loads only its valid lanes of both operands: past them lie src columns
// that the row's pixels do not read through that tap, maybe inf.
template <typename V, typename T, int TB>
CORR2D_TARGET void depthwise_weight_grad_plane(const Geometry& g, const SrcPlanes& sp,
                                               const T* src, const T* gy,
                                               typename V::scalar* staged,
                                               typename V::scalar* sums) {
  using S = typename V::scalar;
  using R = typename V::reg;
  constexpr int L = V::lanes;
  stage_src_plane<V, T>(g, sp, src, staged);
  const int64_t ow = g.cols.output, rows_apart = g.rows.stride * sp.row_stride;
  const int64_t whole = ow / L, tail = ow % L;
  const int64_t blocks = static_cast<int64_t>(sp.tap_off.size()) / TB;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t* off = sp.tap_off.data() + b * TB;
    R acc[TB];
    CORR2D_UNROLL
    for (int i = 0; i < TB; ++i) acc[i] = V::load(sums + (b * TB + i) * L);
    for (int64_t y = 0; y < g.rows.output; ++y) {
      const S* base = staged + y * rows_apart;
      const T* d_row = gy + y * ow;
      for (int64_t m = 0; m < whole; ++m) {
        const R d = V::template load_from<T>(d_row + m * L);
        CORR2D_UNROLL
        for (int i = 0; i < TB; ++i) acc[i] = V::fma(d, V::load(base + m * L + off[i]), acc[i]);
      }
      if (tail) {
        const int n = static_cast<int>(tail);
        const R d = load_first_from<V>(d_row + whole * L, n);
        CORR2D_UNROLL
        for (int i = 0; i < TB; ++i)
          acc[i] = V::fma(d, V::load_first(base + whole * L + off[i], n), acc[i]);
      }
    }
    CORR2D_UNROLL
    for (int i = 0; i < TB; ++i) V::store(sums + (b * TB + i) * L, acc[i]);
  }
}

template <typename V, typename T>
void depthwise_weight_grad_by_planes(const Geometry& g, const T* input, const T* grad_output,
                                     T* grad_weight) {
  using S = typename V::scalar;
  constexpr int L = V::lanes;
  constexpr int TB = V::registers >= 32 ? 9 : 6;  // a 3x3's taps at once where they fit
  SrcPlanes sp(g, L);
  const int64_t taps = g.kernel_area();
  // The taps in whole blocks of TB, the last one filled up by repeats of tap 0 (sums dropped).
  const int64_t blocks = (taps + TB - 1) / TB;
  sp.tap_off.resize(blocks * TB, sp.tap_off[0]);
  // A task owns whole channels and adds their images in order, then each tap's lanes: the
  // same sums for any thread count.
  at::parallel_for(0, g.in_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<S> staged(sp.size(), S(0));  // its rows outside the image stay zero
    std::vector<S> sums(blocks * TB * L);
    for (int64_t c = begin; c < end; ++c) {
      std::fill(sums.begin(), sums.end(), S(0));
      for (int64_t n = 0; n < g.batch; ++n) {
        const int64_t plane = n * g.in_channels + c;
        depthwise_weight_grad_plane<V, T, TB>(g, sp, input + plane * g.input_plane(),
                                              grad_output + plane * g.output_plane(),
                                              staged.data(), sums.data());
      }
      for (int64_t t = 0; t < taps; ++t)
        grad_weight[c * taps + t] = static_cast<T>(sum_lanes(sums.data() + t * L, L));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Depthwise input gradient at stride 2, plane by plane (plan.h: InputGradPlanes).
//
// grad_input[y, x] = sum over taps (kh, kw) with y + ph - kh = 2r and x + pw - kw = 2c of
// w[kh, kw] * grad_output[r, c]. A phase's row (every other column of grad_input) is a sum of
// whole grad_output rows shifted by d, a vector load and a multiply-add a tap, and the row of
// grad_input is its two phases interleaved, written in place.
//
// The four phase correlations this replaces (forward_form.h) each staged and set up 14-wide
// planes and stored their pixels one by one, every other one: the 192 dw 3x3/2 layer on 28x28
// took 3x torch's time. Here each plane of grad_output is staged once, in a buffer whose
// margins and rows past the plane's edges stay zero, so no load needs a bound. Each pixel's
// sum runs kh then kw ascending, whatever the thread count.

// One plane: gy (grad_output's) staged into `staged`, grad_input's written to gx.
template <typename V, typename T>
CORR2D_TARGET void depthwise_input_grad_plane(const Geometry& g, const InputGradPlanes& ip,
                                              const T* gy, const typename V::scalar* w,
                                              typename V::scalar* staged, T* gx) {
  using S = typename V::scalar;
  using R = typename V::reg;
  constexpr int L = V::lanes;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t r0 = std::max<int64_t>(0, ip.row_lo);
  const int64_t r1 = std::min(rows.output, ip.row_lo + ip.rows);
  for (int64_t r = r0; r < r1; ++r)
    copy_run<V, T>(staged + (r - ip.row_lo) * ip.width + ip.left, gy + r * cols.output,
                   cols.output);
  for (int64_t y = 0; y < rows.input; ++y, gx += cols.input) {
    // The taps kh of this row's parity, each reading grad_output row (y + ph - kh) / 2.
    const int64_t kh0 = (y + rows.padding) & 1;
    for (int64_t m = 0; m < ip.chunks; ++m) {
      R even = V::zero(), odd = V::zero();
      for (int64_t kh = kh0; kh < rows.kernel; kh += 2) {
        const S* row =
            staged + ((y + rows.padding - kh) / 2 - ip.row_lo) * ip.width + ip.left + m * L;
        const S* wk = w + kh * cols.kernel;
        for (const auto& t : ip.taps[0]) even = V::fma(V::set1(wk[t.kw]), V::load(row + t.d), even);
        for (const auto& t : ip.taps[1]) odd = V::fma(V::set1(wk[t.kw]), V::load(row + t.d), odd);
      }
      const int64_t x0 = 2 * m * L;
      store_first_to<V, T>(gx + x0, V::interleave_low(even, odd),
                           static_cast<int>(std::min<int64_t>(L, cols.input - x0)));
      if (cols.input - x0 > L)
        store_first_to<V, T>(gx + x0 + L, V::interleave_high(even, odd),
                             static_cast<int>(std::min<int64_t>(L, cols.input - x0 - L)));
    }
  }
}

template <typename V, typename T>
void depthwise_input_grad_by_planes(const Geometry& g, const T* grad_output, const T* weight,
                                    T* grad_input) {
  using S = typename V::scalar;
  const InputGradPlanes ip(g, V::lanes);
  // (The staged buffer's margins and outer rows stay zero.)
  for_each_plane<S>(g, weight, ip.size(), [&](int64_t plane, int64_t, const S* w, S* staged) {
    depthwise_input_grad_plane<V, T>(g, ip, grad_output + plane * g.output_plane(), w, staged,
                                     grad_input + plane * g.input_plane());
  });
}

// ---------------------------------------------------------------------------------------------
// One instantiation's kernel table entries: the dtype switch in front of the templates, with
// VF the float traits (float, bfloat16, float16 accumulate in float) and VD the double ones.
template <typename VF, typename VD>
struct Instantiation {
  template <typename F>
  static void by_dtype(at::ScalarType dtype, const F& f) {
    switch (dtype) {
      case at::kFloat: f(VF{}, float{}); break;
      case at::kBFloat16: f(VF{}, c10::BFloat16{}); break;
      case at::kHalf: f(VF{}, c10::Half{}); break;
      case at::kDouble: f(VD{}, double{}); break;
      default: TORCH_CHECK(false, "corr2d_ext CPU kernels: unsupported dtype ", dtype);
    }
  }

  // The input gradient's stride phases (forward_form.h), each run by `correlate_phase`; the
  // pixels of a phase no tap reaches are zeroed first. Both memory formats go through here.
  template <typename F>
  static void for_each_phase(const Geometry& g, const WeightStrides& ws,
                             const at::Tensor& grad_input, const F& correlate_phase) {
    const auto phases = input_grad_phases(g, ws);
    if (std::any_of(phases.begin(), phases.end(), [](const auto& p) { return !p.taps; }))
      grad_input.zero_();
    for (const InputGradPhase& p : phases)
      if (p.taps) correlate_phase(p);
  }

  static void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, const at::Tensor& output) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      if (depthwise_by_planes(g, V::lanes, sizeof(typename V::scalar)))
        return depthwise_forward_by_planes<V, T>(g, input.const_data_ptr<T>(),
                                                 weight.const_data_ptr<T>(),
                                                 bias ? bias->const_data_ptr<T>() : nullptr,
                                                 output.mutable_data_ptr<T>());
      correlate<V, T>(g, forward_weight_layout(g), contiguous_dst_layout(g),
                      input.const_data_ptr<T>(),
                      weight.const_data_ptr<T>(), bias ? bias->const_data_ptr<T>() : nullptr,
                      output.mutable_data_ptr<T>());
    });
  }

  static void input_grad(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, const at::Tensor& grad_input) {
    by_dtype(grad_output.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      if (input_grad_by_planes(g, V::lanes, sizeof(typename V::scalar)))
        return cpu::depthwise_input_grad_by_planes<V, T>(g, grad_output.const_data_ptr<T>(),
                                                          weight.const_data_ptr<T>(),
                                                          grad_input.mutable_data_ptr<T>());
      for_each_phase(g, contiguous_weight_strides(g), grad_input, [&](const InputGradPhase& p) {
        correlate<V, T>(p.g, p.wl, p.dst, grad_output.const_data_ptr<T>(),
                        weight.const_data_ptr<T>(), nullptr, grad_input.mutable_data_ptr<T>());
      });
    });
  }

  // The weight as it is handed over: OIHW, or OHWI (channels_last) for these kernels.
  static WeightStrides strides_of(const at::Tensor& weight) {
    return {weight.stride(0), weight.stride(1), weight.stride(2), weight.stride(3)};
  }

  // src and dst NHWC (channels_last_fits; dispatch.cpp decides); the weight OIHW or OHWI.
  static void forward_channels_last(const Geometry& g, const at::Tensor& input,
                                    const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias,
                                    const at::Tensor& output) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      correlate_channels_last<V, T>(
          g, forward_weight_layout(g, strides_of(weight)), channels_last(contiguous_dst_layout(g), g.out_channels),
          input.const_data_ptr<T>(), weight.const_data_ptr<T>(),
          bias ? bias->const_data_ptr<T>() : nullptr, output.mutable_data_ptr<T>());
    });
  }

  static void input_grad_channels_last(const Geometry& g, const at::Tensor& grad_output,
                                       const at::Tensor& weight, const at::Tensor& grad_input) {
    by_dtype(grad_output.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      for_each_phase(g, strides_of(weight), grad_input, [&](const InputGradPhase& p) {
        correlate_channels_last<V, T>(p.g, p.wl, channels_last(p.dst, g.in_channels),
                                      grad_output.const_data_ptr<T>(),
                                      weight.const_data_ptr<T>(), nullptr,
                                      grad_input.mutable_data_ptr<T>());
      });
    });
  }

  static void weight_grad_channels_last(const Geometry& g, const at::Tensor& input,
                                        const at::Tensor& grad_output,
                                        const at::Tensor& grad_weight) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      cpu::weight_grad_channels_last<V, T>(g, input.const_data_ptr<T>(),
                                           grad_output.const_data_ptr<T>(),
                                           grad_weight.mutable_data_ptr<T>());
    });
  }

  static void weight_grad(const Geometry& g, const at::Tensor& input,
                          const at::Tensor& grad_output, const at::Tensor& grad_weight) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      if (depthwise_by_planes(g, V::lanes, sizeof(typename V::scalar)))
        return depthwise_weight_grad_by_planes<V, T>(g, input.const_data_ptr<T>(),
                                                     grad_output.const_data_ptr<T>(),
                                                     grad_weight.mutable_data_ptr<T>());
      cpu::weight_grad<V, T>(g, input.const_data_ptr<T>(), grad_output.const_data_ptr<T>(),
                             grad_weight.mutable_data_ptr<T>());
    });
  }
};

}  // namespace
}  // namespace cpu
}  // namespace corr2d_ext
