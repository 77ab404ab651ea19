// The fast float32 CPU path: direct correlation with register blocking, for CPUs with AVX2
// and FMA (chosen at run time; the build itself targets plain x86-64, so a wheel built here
// runs anywhere, and the portable kernels of corr2d_kernel.cpp serve other CPUs and dtypes).
//
// The scheme (after Zhang, Franchetti and Low, "High Performance Zero-Memory Overhead Direct
// Convolutions", ICML 2018): each task stages the few source rows it reads, for every channel,
// into a small zero-padded buffer (the "slab"), so that the inner loops never test bounds and
// every load is a plain 8-float vector load. Strided columns are stored phase by phase (all
// even columns, then all odd ones, for stride 2), which turns a strided read into a contiguous
// one. The micro-kernels then keep OCB output channels x NV vectors of 8 pixels in 12 of the
// 16 AVX registers and stream taps through them: every input vector loaded serves OCB
// channels, every weight broadcast serves NV vectors.
//
// Only intrinsics run inside functions marked target("avx2,fma"), and those functions are
// private to this file, so no AVX2 code can leak into a caller on a CPU without it.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>

#include "corr2d_cpu.h"

#define CORR2D_AVX2 __attribute__((target("avx2,fma")))
// The accumulator arrays must be unrolled away into registers: a loop the compiler leaves
// rolled indexes them at run time, which keeps them in memory and adds a store to every FMA.
#define CORR2D_UNROLL _Pragma("GCC unroll 16")

namespace corr2d_ext {
namespace cpu {
namespace avx2 {
namespace {

constexpr int kLanes = 8;     // floats per AVX register
constexpr int kAccRegs = 12;  // accumulators per micro-kernel; the other 4 registers stream

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

alignas(32) const int32_t kLaneMask[2 * kLanes] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                   0,  0,  0,  0,  0,  0,  0,  0};

// The first `valid` lanes set.
CORR2D_AVX2 inline __m256i lane_mask(int valid) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + kLanes - valid));
}

// ---------------------------------------------------------------------------------------------
// A correlation in forward form: dst[n, o] = bias[o] + sum over the src channels i of o's group
// and the taps (kh, kw) of src[n, i, y*sh - off_h + kh*dh, x*sw - off_w + kw*dw] * w[o, i, kh, kw]
// The forward op is this with off = padding; the input gradient (stride 1) is this with src =
// grad_output, dst = grad_input, off = dilation * (kernel - 1) - padding and the weight flipped
// and transposed.
struct Problem {
  int64_t batch, groups;
  int64_t src_channels, src_h, src_w;
  int64_t dst_channels, dst_h, dst_w;
  int64_t kh, kw, sh, sw, dh, dw, off_h, off_w;

  int64_t src_per_group() const { return src_channels / groups; }
  int64_t dst_per_group() const { return dst_channels / groups; }
  int64_t taps() const { return kh * kw; }
};

// The staged rows of one task: for every src channel, `rows` rows, each stored as `sw` phases
// of `phase_len` floats. Element (channel c, staged row t, padded column pc) lives at
// c * channel_stride + t * row_stride + (pc % sw) * phase_len + pc / sw.
struct Slab {
  int64_t rows;           // src rows staged per channel
  int64_t phase_len;      // floats per phase
  int64_t row_stride;     // sw * phase_len
  int64_t channel_stride; // rows * row_stride
  int64_t x_alloc;        // dst columns rounded up to whole vectors

  Slab(const Problem& p, int64_t dst_rows) {
    rows = (dst_rows - 1) * p.sh + (p.kh - 1) * p.dh + 1;
    x_alloc = round_up(p.dst_w, kLanes);
    // The last vector of the last tap reads index x_alloc - 1 + ((kw - 1) * dw) / sw.
    phase_len = x_alloc + ((p.kw - 1) * p.dw) / p.sw + 1;
    row_stride = p.sw * phase_len;
    channel_stride = rows * row_stride;
  }
  // Floats for `channels` staged channels.
  int64_t size(int64_t channels) const { return channels * channel_stride; }
};

// dst[j] = from[j] for j in [begin, end), 0 elsewhere in [0, len): one staged row at stride 1.
// Rows are often a few dozen floats (depthwise, LeNet), where a library call costs more than
// the copy, so this is whole-vector stores only: the zeros before `begin` and after `end` are
// written a vector at a time, running over into the copied part (rewritten after) and past
// `len` (into the next row, staged after this one, or the slab's kLanes floats of slack). The
// optimize attribute stops GCC from turning the zero loops back into memset calls.
__attribute__((target("avx2,fma"), optimize("no-tree-loop-distribute-patterns")))
void stage_row(float* dst, const float* from, int64_t begin, int64_t end, int64_t len) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t j = 0; j < begin; j += kLanes) _mm256_storeu_ps(dst + j, zero);
  int64_t j = begin;
  for (; j + kLanes <= end; j += kLanes) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(from + j));
  for (; j < end; ++j) dst[j] = from[j];
  for (j = end; j < len; j += kLanes) _mm256_storeu_ps(dst + j, zero);
}

// Fills the slab with src channels [c_begin, c_end) of image n, for the dst rows starting at
// y0: zeros wherever the window reaches into padding (or past the end, for the rounded-up last
// vector). A task stages one group (or a few depthwise channels) at a time, so the slab stays
// in L2 however many channels the layer has.
void stage(const Problem& p, const Slab& s, const float* src, int64_t n, int64_t y0,
           int64_t c_begin, int64_t c_end, float* slab) {
  const int64_t first_row = y0 * p.sh - p.off_h;
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* plane = src + (n * p.src_channels + c) * p.src_h * p.src_w;
    for (int64_t t = 0; t < s.rows; ++t) {
      float* dst = slab + (c - c_begin) * s.channel_stride + t * s.row_stride;
      const int64_t r = first_row + t;
      // Plain loops rather than memset/memcpy: rows are often a few dozen floats (depthwise,
      // LeNet), where three library calls per row cost more than the copy.
      if (r < 0 || r >= p.src_h) {
        for (int64_t j = 0; j < s.row_stride; ++j) dst[j] = 0.0f;
        continue;
      }
      const float* row = plane + r * p.src_w;
      if (p.sw == 1) {
        // Padded column j holds source column j - off_w.
        const int64_t begin = std::clamp<int64_t>(p.off_w, 0, s.phase_len);
        const int64_t end = std::clamp<int64_t>(p.off_w + p.src_w, begin, s.phase_len);
        stage_row(dst, row - p.off_w, begin, end, s.phase_len);
      } else {
        for (int64_t q = 0; q < p.sw; ++q) {
          float* phase = dst + q * s.phase_len;
          for (int64_t j = 0; j < s.phase_len; ++j) {
            const int64_t col = j * p.sw + q - p.off_w;
            phase[j] = (col >= 0 && col < p.src_w) ? row[col] : 0.0f;
          }
        }
      }
    }
  }
}

// Offset, within one channel of the slab, of tap t = kh * kw_count + kw for a dst pixel at
// slab position 0: the row kh * dh, the phase and index of column kw * dw.
std::vector<int64_t> tap_offsets(const Problem& p, const Slab& s) {
  std::vector<int64_t> off(p.taps());
  for (int64_t kh = 0; kh < p.kh; ++kh)
    for (int64_t kw = 0; kw < p.kw; ++kw) {
      const int64_t col = kw * p.dw;
      off[kh * p.kw + kw] = kh * p.dh * s.row_stride + (col % p.sw) * s.phase_len + col / p.sw;
    }
  return off;
}

// The vectors of 8 dst pixels of a task (its "slots"), as offsets: slot v covers dst row r of
// the task's row block, columns x0 .. x0 + 7, and reads the slab at in_off[v], the staged
// grad_output at gy_off[v]; it writes dst at out_off[v] from the task's first row, and `valid`
// of its 8 lanes are real (fewer at the right edge). Whole vectors come first. Computed once
// per call, for a full row block and for the last one.
struct SlotTable {
  std::vector<int64_t> in_off, out_off, gy_off;
  std::vector<int> valid;
  int full = 0;  // the first `full` slots are whole vectors

  SlotTable(const Problem& p, const Slab& s, int64_t rows) {
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t x0 = 0; x0 < p.dst_w; x0 += kLanes) {
          const bool whole = x0 + kLanes <= p.dst_w;
          if (whole != (pass == 0)) continue;
          in_off.push_back(r * p.sh * s.row_stride + x0);
          out_off.push_back(r * p.dst_w + x0);
          gy_off.push_back(r * s.x_alloc + x0);
          valid.push_back(static_cast<int>(std::min<int64_t>(kLanes, p.dst_w - x0)));
          full += whole;
        }
  }
  int size() const { return static_cast<int>(in_off.size()); }
};

// ---------------------------------------------------------------------------------------------
// Forward-form micro-kernel: OCB dst channels x NV slots, for `run.blocks` consecutive channel
// blocks that share the slots (the output-channel blocks of one group, or every channel of a
// depthwise layer), so that setting up the slots is paid once per run, not once per block.
// For block b: the slab at in[v] + b * in_stride (slot v's pixel 0, channel 0 of the block's
// group), weights from w + b * w_stride (w[o0, 0, 0, 0]), bias from bias + b * bias_stride, and
// slot v's 8 results written to out[v] + b * out_stride, of which `valid[v]` are kept (fewer at
// the right edge, none for a slot that only pads the last group).
struct BlockRun {
  int64_t blocks, in_stride, w_stride, bias_stride, out_stride;
};


template <int OCB, int NV>
CORR2D_AVX2 void forward_tiles(const float* in, const int64_t* in_off, int64_t channel_stride,
                               const int64_t* tap_off, int64_t taps, int64_t channels,
                               const float* w, int64_t w_o_stride, const float* bias, float* out,
                               const int64_t* out_off, const int* valid, int64_t out_o_stride,
                               const BlockRun& run) {
  for (int64_t b = 0; b < run.blocks; ++b) {
    const float* wb = w + b * run.w_stride;
    __m256 acc[OCB][NV];
    CORR2D_UNROLL
    for (int j = 0; j < OCB; ++j) {
      const __m256 init = _mm256_set1_ps(bias ? bias[b * run.bias_stride + j] : 0.0f);
      CORR2D_UNROLL
      for (int v = 0; v < NV; ++v) acc[j][v] = init;
    }
    const float* base[NV];
    CORR2D_UNROLL
    for (int v = 0; v < NV; ++v) base[v] = in + in_off[v] + b * run.in_stride;
    for (int64_t i = 0; i < channels; ++i) {
      const float* wi = wb + i * taps;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t off = tap_off[t];
        // 16 registers: 12 accumulators, and either the NV input vectors plus one weight
        // (NV <= 3) or the OCB weights plus one input vector (OCB <= 3) live at a time.
        if constexpr (NV <= 3) {
          __m256 x[NV];
          CORR2D_UNROLL
          for (int v = 0; v < NV; ++v) x[v] = _mm256_loadu_ps(base[v] + off);
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) {
            const __m256 wv = _mm256_broadcast_ss(wi + j * w_o_stride + t);
            CORR2D_UNROLL
            for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(wv, x[v], acc[j][v]);
          }
        } else {
          __m256 wv[OCB];
          CORR2D_UNROLL
          for (int j = 0; j < OCB; ++j) wv[j] = _mm256_broadcast_ss(wi + j * w_o_stride + t);
          CORR2D_UNROLL
          for (int v = 0; v < NV; ++v) {
            const __m256 x = _mm256_loadu_ps(base[v] + off);
            CORR2D_UNROLL
            for (int j = 0; j < OCB; ++j) acc[j][v] = _mm256_fmadd_ps(wv[j], x, acc[j][v]);
          }
        }
      }
      CORR2D_UNROLL
      for (int v = 0; v < NV; ++v) base[v] += channel_stride;
    }
    CORR2D_UNROLL
    for (int v = 0; v < NV; ++v) {
      float* o = out + out_off[v] + b * run.out_stride;
      if (valid[v] == kLanes) {
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) _mm256_storeu_ps(o + j * out_o_stride, acc[j][v]);
      } else if (valid[v] > 0) {
        // Not a masked store: vmaskmovps is microcoded and slow on AMD cores.
        alignas(32) float tmp[kLanes];
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) {
          _mm256_store_ps(tmp, acc[j][v]);
          for (int k = 0; k < valid[v]; ++k) o[j * out_o_stride + k] = tmp[k];
        }
      }
    }
  }
}

// The staged rows of one group (or one chunk of depthwise channels) should stay in L2.
constexpr int64_t kSlabBytes = 96 * 1024;

// dst rows per task: at least enough for `min_slots` vectors (to fill the micro-kernel when
// rows are narrow), and enough that the (kh - 1) * dh extra rows every block stages are a
// small overhead, as long as one group's staged rows fit in kSlabBytes.
// Small images in a batch are taken whole (every input row staged once, read in order), if
// the batch alone gives the threads enough tasks. Depends on the geometry only: the weight
// gradient's summation order follows the row blocks, and must not change with the threads.
int64_t rows_per_task(const Problem& p, int64_t min_slots) {
  const int64_t vectors_per_row = (p.dst_w + kLanes - 1) / kLanes;
  const int64_t at_least = std::min(p.dst_h, (min_slots + vectors_per_row - 1) / vectors_per_row);
  const int64_t halo = (p.kh - 1) * p.dh;
  const int64_t row_bytes = p.src_per_group() * Slab(p, 1).row_stride * int64_t{sizeof(float)};
  constexpr int64_t kWholeImageBatch = 4;
  if (p.batch >= kWholeImageBatch && Slab(p, p.dst_h).rows * row_bytes <= kSlabBytes / 4)
    return p.dst_h;
  int64_t rows = std::min(p.dst_h, std::max(at_least, 4 * halo));
  while (rows > at_least && ((rows - 1) * p.sh + halo + 1) * row_bytes > kSlabBytes) --rows;
  return std::max<int64_t>(rows, 1);
}

// Depthwise (one src and one dst channel per group) groups staged together: as many as fit.
int64_t groups_per_stage(const Problem& p, const Slab& s) {
  if (p.src_per_group() != 1 || p.dst_per_group() != 1) return 1;
  const int64_t per_channel = s.channel_stride * int64_t{sizeof(float)};
  return std::clamp<int64_t>(kSlabBytes / 4 / per_channel, 1, p.groups);
}

// Runs the OCB x NV micro-kernel over every slot of a task, NV slots at a time (the last
// group padded with repeats of its first slot, with no valid lanes).
template <int OCB>
void forward_slots(const Problem& p, const Slab& s, const SlotTable& st, const float* slab,
                   const int64_t* tap_off, const float* w, const float* bias, float* dst_o0,
                   int64_t y0, const BlockRun& run) {
  // One channel gets 8 slots, not 12: every slot needs its own base pointer, and 12 of them
  // do not fit in the 16 general registers next to the loop's own, so they were reloaded from
  // the stack on every load. 8 accumulators still cover the FMA latency (4 cycles x 2 pipes).
  constexpr int NV = OCB == 1 ? 8 : kAccRegs / OCB;
  const int64_t cin = p.src_per_group();
  const int64_t out_plane = p.dst_h * p.dst_w;
  float* out = dst_o0 + y0 * p.dst_w;
  const int n = st.size();
  int first = 0;
  for (; first + NV <= n; first += NV)
    forward_tiles<OCB, NV>(slab, st.in_off.data() + first, s.channel_stride, tap_off, p.taps(),
                           cin, w, cin * p.taps(), bias, out, st.out_off.data() + first,
                           st.valid.data() + first, out_plane, run);
  if (first < n) {
    int64_t in_off[NV], out_off[NV];
    int valid[NV];
    for (int v = 0; v < NV; ++v) {
      const int k = first + v < n ? first + v : first;
      in_off[v] = st.in_off[k];
      out_off[v] = st.out_off[k];
      valid[v] = first + v < n ? st.valid[k] : 0;
    }
    forward_tiles<OCB, NV>(slab, in_off, s.channel_stride, tap_off, p.taps(), cin, w,
                           cin * p.taps(), bias, out, out_off, valid, out_plane, run);
  }
}

void correlate(const Problem& p, const float* src, const float* w, const float* bias, float* dst) {
  const int64_t rows = rows_per_task(p, kAccRegs);
  const int64_t blocks_per_image = (p.dst_h + rows - 1) / rows;
  const int64_t cin = p.src_per_group();
  const int64_t cout = p.dst_per_group();
  const int64_t taps = p.taps();
  const int64_t out_plane = p.dst_h * p.dst_w;
  // Every task stages a whole block of rows (the last block's extra rows are staged but never
  // read), so the slab's layout, the tap offsets and the slots are computed once per call.
  const Slab s(p, rows);
  const auto tap_off = tap_offsets(p, s);
  const SlotTable full_slots(p, s, rows);
  const SlotTable last_slots(p, s, p.dst_h - (blocks_per_image - 1) * rows);
  // Output-channel blocks of 4, or of 3 where that divides a group evenly (LeNet's 6).
  const int ocb = cout % 4 == 0 || cout % 3 != 0 ? 4 : 3;
  const int64_t macs_per_task = rows * p.dst_w * p.dst_channels * cin * taps;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, macs_per_task));
  const int64_t chunk = groups_per_stage(p, s);
  at::parallel_for(0, p.batch * blocks_per_image, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> slab(s.size(chunk * cin) + kLanes);  // + slack for stage_row
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks_per_image;
      const int64_t y0 = (task % blocks_per_image) * rows;
      const auto& slots = y0 + rows <= p.dst_h ? full_slots : last_slots;
      float* out_n = dst + n * p.dst_channels * out_plane;
      if (cin == 1 && cout == 1) {
        // Depthwise (or one channel): one run over each staged chunk of channels.
        for (int64_t g0 = 0; g0 < p.groups; g0 += chunk) {
          const int64_t g1 = std::min(p.groups, g0 + chunk);
          stage(p, s, src, n, y0, g0, g1, slab.data());
          const BlockRun run{g1 - g0, s.channel_stride, taps, 1, out_plane};
          forward_slots<1>(p, s, slots, slab.data(), tap_off.data(), w + g0 * taps,
                           bias ? bias + g0 : nullptr, out_n + g0 * out_plane, y0, run);
        }
        continue;
      }
      for (int64_t g = 0; g < p.groups; ++g) {
        stage(p, s, src, n, y0, g * cin, (g + 1) * cin, slab.data());
        const float* group_slab = slab.data();
        const int64_t o0 = g * cout;
        const int64_t full = cout / ocb;
        const BlockRun run{full, 0, ocb * cin * taps, ocb, ocb * out_plane};
        const float* b0 = bias ? bias + o0 : nullptr;
        if (ocb == 3)
          forward_slots<3>(p, s, slots, group_slab, tap_off.data(), w + o0 * cin * taps, b0,
                           out_n + o0 * out_plane, y0, run);
        else if (full > 0)
          forward_slots<4>(p, s, slots, group_slab, tap_off.data(), w + o0 * cin * taps, b0,
                           out_n + o0 * out_plane, y0, run);
        const int64_t o1 = o0 + ocb * full;  // the channels left over
        const BlockRun run1{1, 0, 0, 0, 0};
        const float* w1 = w + o1 * cin * taps;
        const float* b1 = bias ? bias + o1 : nullptr;
        float* out1 = out_n + o1 * out_plane;
        switch (cout - ocb * full) {
          case 3: forward_slots<3>(p, s, slots, group_slab, tap_off.data(), w1, b1, out1, y0, run1); break;
          case 2: forward_slots<2>(p, s, slots, group_slab, tap_off.data(), w1, b1, out1, y0, run1); break;
          case 1: forward_slots<1>(p, s, slots, group_slab, tap_off.data(), w1, b1, out1, y0, run1); break;
          default: break;
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Weight gradient: grad_w[o, i, t] = sum over (n, y, x) of gy[n, o, y, x] * slab(i, y, x, t).
// Micro-kernel: OCB output channels x TB taps in 12 accumulators of 8 lanes, carried across every
// pixel vector of a task's rows, then stored back into the task's lane buffer; the lanes are
// summed (in a fixed order) once per chunk. Slot v reads the slab at in + in_off[v] and the
// staged grad_output (zero past each row's end) at gy + gy_off[v] for channel o0.
//
// MASKED is for the slots at the right edge: their lanes past the row's end would multiply that
// zero by whatever the slab holds there, and 0 * inf would put a NaN in a gradient that
// F.conv2d computes finite, so those lanes of the input are cleared instead.
template <int OCB, int TB, bool MASKED>
CORR2D_AVX2 void weight_grad_tile(const float* in, const int64_t* in_off, const float* gy,
                                  const int64_t* gy_off, const int* valid, int nv,
                                  int64_t gy_o_stride, const int64_t* tap_off, float* lanes,
                                  int64_t lanes_o_stride) {
  __m256 acc[OCB][TB];
  CORR2D_UNROLL
  for (int j = 0; j < OCB; ++j)
    CORR2D_UNROLL
    for (int t = 0; t < TB; ++t) acc[j][t] = _mm256_loadu_ps(lanes + j * lanes_o_stride + t * kLanes);
  int64_t taps[TB];
  CORR2D_UNROLL
  for (int t = 0; t < TB; ++t) taps[t] = tap_off[t];
  for (int v = 0; v < nv; ++v) {
    const float* x0 = in + in_off[v];
    const float* g0 = gy + gy_off[v];
    __m256 mask = _mm256_setzero_ps();
    if constexpr (MASKED) mask = _mm256_castsi256_ps(lane_mask(valid[v]));
    // 16 registers: 12 accumulators, and either the TB input vectors plus one grad_output
    // vector (TB <= 3) or the OCB grad_output vectors plus one input vector live at a time.
    if constexpr (TB <= 3) {
      __m256 x[TB];
      CORR2D_UNROLL
      for (int t = 0; t < TB; ++t) {
        x[t] = _mm256_loadu_ps(x0 + taps[t]);
        if constexpr (MASKED) x[t] = _mm256_and_ps(x[t], mask);
      }
      CORR2D_UNROLL
      for (int j = 0; j < OCB; ++j) {
        const __m256 g = _mm256_loadu_ps(g0 + j * gy_o_stride);
        CORR2D_UNROLL
        for (int t = 0; t < TB; ++t) acc[j][t] = _mm256_fmadd_ps(g, x[t], acc[j][t]);
      }
    } else {
      __m256 g[OCB];
      CORR2D_UNROLL
      for (int j = 0; j < OCB; ++j) g[j] = _mm256_loadu_ps(g0 + j * gy_o_stride);
      CORR2D_UNROLL
      for (int t = 0; t < TB; ++t) {
        __m256 x = _mm256_loadu_ps(x0 + taps[t]);
        if constexpr (MASKED) x = _mm256_and_ps(x, mask);
        CORR2D_UNROLL
        for (int j = 0; j < OCB; ++j) acc[j][t] = _mm256_fmadd_ps(g[j], x, acc[j][t]);
      }
    }
  }
  CORR2D_UNROLL
  for (int j = 0; j < OCB; ++j)
    CORR2D_UNROLL
    for (int t = 0; t < TB; ++t) _mm256_storeu_ps(lanes + j * lanes_o_stride + t * kLanes, acc[j][t]);
}

// TB taps at a time, then the rest (fewer than TB) in one call.
template <int OCB, int TB>
void weight_grad_taps(const SlotTable& ws, const float* in, const float* gy,
                      int64_t gy_o_stride, const int64_t* tap_off, int64_t taps, float* lanes,
                      int64_t lanes_o_stride);

template <int OCB, int TB>
void weight_grad_block(const SlotTable& ws, const float* in, const float* gy,
                       int64_t gy_o_stride, const int64_t* tap_off, float* lanes,
                       int64_t lanes_o_stride) {
  const int n_all = ws.size();
  weight_grad_tile<OCB, TB, false>(in, ws.in_off.data(), gy, ws.gy_off.data(), ws.valid.data(),
                                   ws.full, gy_o_stride, tap_off, lanes, lanes_o_stride);
  if (n_all > ws.full)
    weight_grad_tile<OCB, TB, true>(in, ws.in_off.data() + ws.full, gy, ws.gy_off.data() + ws.full,
                                    ws.valid.data() + ws.full, n_all - ws.full, gy_o_stride,
                                    tap_off, lanes, lanes_o_stride);
}

template <int OCB, int TB>
void weight_grad_rest(int64_t rest, const SlotTable& ws, const float* in, const float* gy,
                      int64_t gy_o_stride, const int64_t* tap_off, float* lanes,
                      int64_t lanes_o_stride) {
  if constexpr (TB > 1) {
    if (rest == TB - 1) {
      weight_grad_block<OCB, TB - 1>(ws, in, gy, gy_o_stride, tap_off, lanes, lanes_o_stride);
      return;
    }
    weight_grad_rest<OCB, TB - 1>(rest, ws, in, gy, gy_o_stride, tap_off, lanes, lanes_o_stride);
  }
}

template <int OCB, int TB>
void weight_grad_taps(const SlotTable& ws, const float* in, const float* gy,
                      int64_t gy_o_stride, const int64_t* tap_off, int64_t taps, float* lanes,
                      int64_t lanes_o_stride) {
  int64_t t = 0;
  for (; t + TB <= taps; t += TB)
    weight_grad_block<OCB, TB>(ws, in, gy, gy_o_stride, tap_off + t, lanes + t * kLanes,
                               lanes_o_stride);
  if (t < taps)
    weight_grad_rest<OCB, TB>(taps - t, ws, in, gy, gy_o_stride, tap_off + t, lanes + t * kLanes,
                              lanes_o_stride);
}

// Chunks of the sum over (n, row block): a number fixed by the geometry, never by the thread
// count, each summed by one task into its own weight-sized partial; partials are then added
// in chunk order. That keeps the result bitwise the same for any number of threads.
constexpr int64_t kWeightGradChunks = 16;
// Slots per weight-gradient task: the accumulators are loaded and stored once per pass over
// the task's slots, so more slots amortize that; the staged rows must still fit in L2.
constexpr int64_t kWeightGradSlots = 48;

void weight_grad_sum(const Problem& p, const float* src, const float* grad_out, float* grad_w) {
  const int64_t rows = rows_per_task(p, kWeightGradSlots);
  const int64_t blocks_per_image = (p.dst_h + rows - 1) / rows;
  const int64_t total_blocks = p.batch * blocks_per_image;
  const int64_t chunks = std::min(total_blocks, kWeightGradChunks);
  const int64_t blocks_per_chunk = (total_blocks + chunks - 1) / chunks;
  const int64_t cin = p.src_per_group();
  const int64_t cout = p.dst_per_group();
  const int64_t taps = p.taps();
  const int64_t w_numel = p.dst_channels * cin * taps;
  // As in correlate(): one slab layout, one set of tap offsets and slots for every task.
  const Slab s(p, rows);
  const auto tap_off = tap_offsets(p, s);
  const int64_t gy_row = s.x_alloc;
  const int64_t gy_o_stride = rows * gy_row;
  const SlotTable full_slots(p, s, rows);
  const SlotTable last_slots(p, s, p.dst_h - (blocks_per_image - 1) * rows);
  std::vector<float> partial(chunks * w_numel);

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> slab(s.size(cin) + kLanes), gy_stage(cout * gy_o_stride, 0.0f);
    std::vector<float> lanes(w_numel * kLanes);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      std::fill(lanes.begin(), lanes.end(), 0.0f);
      const int64_t b_end = std::min(total_blocks, (chunk + 1) * blocks_per_chunk);
      for (int64_t b = chunk * blocks_per_chunk; b < b_end; ++b) {
        const int64_t n = b / blocks_per_image;
        const int64_t y0 = (b % blocks_per_image) * rows;
        const int64_t task_rows = std::min(rows, p.dst_h - y0);
        const SlotTable& ws = task_rows == rows ? full_slots : last_slots;
        const int64_t l_o_stride = cin * taps * kLanes;
        for (int64_t g = 0; g < p.groups; ++g) {
          stage(p, s, src, n, y0, g * cin, (g + 1) * cin, slab.data());
          // The group's grad_output rows; the columns past each row's end stay zero from the
          // allocation.
          for (int64_t o = 0; o < cout; ++o)
            for (int64_t r = 0; r < task_rows; ++r) {
              const float* from =
                  grad_out + ((n * p.dst_channels + g * cout + o) * p.dst_h + y0 + r) * p.dst_w;
              float* to = gy_stage.data() + o * gy_o_stride + r * gy_row;
              for (int64_t x = 0; x < p.dst_w; ++x) to[x] = from[x];
            }
          for (int64_t o0 = g * cout; o0 < (g + 1) * cout; o0 += 4) {
            const float* gy = gy_stage.data() + (o0 - g * cout) * gy_o_stride;
            for (int64_t i = 0; i < cin; ++i) {
              const float* in = slab.data() + i * s.channel_stride;
              float* l = lanes.data() + ((o0 * cin + i) * taps) * kLanes;
              const int64_t* to = tap_off.data();
              switch (std::min<int64_t>(4, (g + 1) * cout - o0)) {
                case 4: weight_grad_taps<4, 3>(ws, in, gy, gy_o_stride, to, taps, l, l_o_stride); break;
                case 3: weight_grad_taps<3, 4>(ws, in, gy, gy_o_stride, to, taps, l, l_o_stride); break;
                case 2: weight_grad_taps<2, 6>(ws, in, gy, gy_o_stride, to, taps, l, l_o_stride); break;
                default: weight_grad_taps<1, 12>(ws, in, gy, gy_o_stride, to, taps, l, l_o_stride); break;
              }
            }
          }
        }
      }
      float* out = partial.data() + chunk * w_numel;
      for (int64_t e = 0; e < w_numel; ++e) {
        const float* l = lanes.data() + e * kLanes;
        // Pairwise, in a fixed order.
        out[e] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
      }
    }
  });
  for (int64_t e = 0; e < w_numel; ++e) {
    float sum = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) sum += partial[c * w_numel + e];
    grad_w[e] = sum;
  }
}

Problem forward_problem(const Geometry& g) {
  return {g.batch,       g.groups,         g.in_channels,    g.rows.input,    g.cols.input,
          g.out_channels, g.rows.output,   g.cols.output,    g.rows.kernel,   g.cols.kernel,
          g.rows.stride,  g.cols.stride,   g.rows.dilation,  g.cols.dilation, g.rows.padding,
          g.cols.padding};
}

}  // namespace

bool supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void forward(const Geometry& g, const float* input, const float* weight, const float* bias,
             float* output) {
  correlate(forward_problem(g), input, weight, bias, output);
}

bool handles_input_grad(const Geometry& g, const float* weight) {
  if (g.rows.stride != 1 || g.cols.stride != 1) return false;
  const int64_t n = g.out_channels * g.in_channels_per_group() * g.kernel_area();
  return std::all_of(weight, weight + n, [](float v) { return std::isfinite(v); });
}

void input_grad(const Geometry& g, const float* grad_output, const float* weight,
                float* grad_input) {
  // With stride 1, grad_input is the correlation of grad_output with the weight flipped in
  // both axes and transposed in its channels (within each group), padded by
  // dilation * (kernel - 1) - padding (negative: cropped).
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, ka = kh * kw;
  std::vector<float> flipped(g.out_channels * cin * ka);
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t j = 0; j < cout; ++j)
      for (int64_t ci = 0; ci < cin; ++ci)
        for (int64_t t = 0; t < ka; ++t)
          flipped[((grp * cin + ci) * cout + j) * ka + (ka - 1 - t)] =
              weight[((grp * cout + j) * cin + ci) * ka + t];
  const Problem p{g.batch,         g.groups,         g.out_channels,
                  g.rows.output,   g.cols.output,    g.in_channels,
                  g.rows.input,    g.cols.input,     kh,
                  kw,              1,                1,
                  g.rows.dilation, g.cols.dilation,  g.rows.dilation * (kh - 1) - g.rows.padding,
                  g.cols.dilation * (kw - 1) - g.cols.padding};
  correlate(p, grad_output, flipped.data(), nullptr, grad_input);
}

void weight_grad(const Geometry& g, const float* input, const float* grad_output,
                 float* grad_weight) {
  weight_grad_sum(forward_problem(g), input, grad_output, grad_weight);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace corr2d_ext
