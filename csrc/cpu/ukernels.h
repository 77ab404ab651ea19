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
      for (int64_t j = j0; j < j1; ++j) phase[j] = static_cast<S>(from[j * stride]);
      for (int64_t j = j1; j < phase_len; ++j) phase[j] = S(0);
    }
  }
};

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

  template <typename T>
  void fill(const T* plane, int64_t first_row) {
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t r = first_row + t;
      if (r >= 0 && r < input_rows)
        how.split(plane + r * input_cols, data + t * how.stride * how.phase_len);
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
      if (cols.stride > 1) split.fill(plane, first_row);
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
        // Not a masked store: vmaskmovps is microcoded and slow on AMD cores.
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
void correlate(const Geometry& g, const WeightLayout& wl, const DstLayout& dl, const T* src,
               const T* w, const T* bias, T* dst) {
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

  static void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, const at::Tensor& output) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      correlate<V, T>(g, forward_weight_layout(g), contiguous_dst_layout(g),
                      input.const_data_ptr<T>(),
                      weight.const_data_ptr<T>(), bias ? bias->const_data_ptr<T>() : nullptr,
                      output.mutable_data_ptr<T>());
    });
  }

  static void input_grad(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, const at::Tensor& grad_input) {
    const auto phases = input_grad_phases(g);
    if (std::any_of(phases.begin(), phases.end(), [](const auto& p) { return !p.taps; }))
      grad_input.zero_();
    by_dtype(grad_output.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      for (const InputGradPhase& p : phases)
        if (p.taps)
          correlate<V, T>(p.g, p.wl, p.dst, grad_output.const_data_ptr<T>(),
                          weight.const_data_ptr<T>(), nullptr, grad_input.mutable_data_ptr<T>());
    });
  }

  static void weight_grad(const Geometry& g, const at::Tensor& input,
                          const at::Tensor& grad_output, const at::Tensor& grad_weight) {
    by_dtype(input.scalar_type(), [&](auto v, auto t) {
      using V = decltype(v);
      using T = decltype(t);
      cpu::weight_grad<V, T>(g, input.const_data_ptr<T>(), grad_output.const_data_ptr<T>(),
                             grad_weight.mutable_data_ptr<T>());
    });
  }
};

}  // namespace
}  // namespace cpu
}  // namespace corr2d_ext
