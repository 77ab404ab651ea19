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
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>

#include "corr2d_cpu.h"

#define CORR2D_AVX2 __attribute__((target("avx2,fma")))

namespace corr2d_ext {
namespace cpu {
namespace avx2 {
namespace {

constexpr int kLanes = 8;     // floats per AVX register
constexpr int kAccRegs = 12;  // accumulators per micro-kernel; the other 4 registers stream

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

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
  int64_t size(const Problem& p) const { return p.src_channels * channel_stride; }
};

// Fills the slab for dst rows starting at y0 of image n: zeros wherever the window reaches
// into padding (or past the end, for the rounded-up last vector).
void stage(const Problem& p, const Slab& s, const float* src, int64_t n, int64_t y0, float* slab) {
  const int64_t first_row = y0 * p.sh - p.off_h;
  for (int64_t c = 0; c < p.src_channels; ++c) {
    const float* plane = src + (n * p.src_channels + c) * p.src_h * p.src_w;
    for (int64_t t = 0; t < s.rows; ++t) {
      float* dst = slab + c * s.channel_stride + t * s.row_stride;
      const int64_t r = first_row + t;
      if (r < 0 || r >= p.src_h) {
        std::memset(dst, 0, sizeof(float) * s.row_stride);
        continue;
      }
      const float* row = plane + r * p.src_w;
      if (p.sw == 1) {
        // Padded column j holds source column j - off_w.
        const int64_t begin = std::clamp<int64_t>(p.off_w, 0, s.phase_len);
        const int64_t end = std::clamp<int64_t>(p.off_w + p.src_w, begin, s.phase_len);
        std::memset(dst, 0, sizeof(float) * begin);
        std::memcpy(dst + begin, row + (begin - p.off_w), sizeof(float) * (end - begin));
        std::memset(dst + end, 0, sizeof(float) * (s.phase_len - end));
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

// One vector of 8 dst pixels of a task: dst row r of the task's row block, columns x0..x0+7.
struct Slot {
  int64_t r;
  int64_t x0;
};

std::vector<Slot> slots_of(const Problem& p, int64_t dst_rows) {
  std::vector<Slot> slots;
  for (int64_t r = 0; r < dst_rows; ++r)
    for (int64_t x0 = 0; x0 < p.dst_w; x0 += kLanes) slots.push_back({r, x0});
  return slots;
}

// ---------------------------------------------------------------------------------------------
// Forward-form micro-kernel: OCB dst channels x NV slots. `in[v]` points at slot v's pixel 0 in
// channel 0 of the group's slab; `w` at w[o0, 0, 0, 0]; out[v] at dst[n, o0, y, x0] of slot v,
// which takes `valid[v]` of its 8 results (fewer at the right edge, none for a padding slot).
template <int OCB, int NV>
CORR2D_AVX2 void forward_tile(const float* const* in, int64_t channel_stride,
                              const int64_t* tap_off, int64_t taps, int64_t channels,
                              const float* w, int64_t w_o_stride, const float* bias,
                              float* const* out, const int* valid, int64_t out_o_stride) {
  __m256 acc[OCB][NV];
  for (int j = 0; j < OCB; ++j) {
    const __m256 b = _mm256_set1_ps(bias ? bias[j] : 0.0f);
    for (int v = 0; v < NV; ++v) acc[j][v] = b;
  }
  const float* base[NV];
  for (int v = 0; v < NV; ++v) base[v] = in[v];
  for (int64_t i = 0; i < channels; ++i) {
    const float* wi = w + i * taps;
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t off = tap_off[t];
      __m256 x[NV];
      for (int v = 0; v < NV; ++v) x[v] = _mm256_loadu_ps(base[v] + off);
      for (int j = 0; j < OCB; ++j) {
        const __m256 wv = _mm256_broadcast_ss(wi + j * w_o_stride + t);
        for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(wv, x[v], acc[j][v]);
      }
    }
    for (int v = 0; v < NV; ++v) base[v] += channel_stride;
  }
  for (int v = 0; v < NV; ++v) {
    if (valid[v] == kLanes) {
      for (int j = 0; j < OCB; ++j) _mm256_storeu_ps(out[v] + j * out_o_stride, acc[j][v]);
    } else if (valid[v] > 0) {
      alignas(32) float tmp[kLanes];
      for (int j = 0; j < OCB; ++j) {
        _mm256_store_ps(tmp, acc[j][v]);
        std::memcpy(out[v] + j * out_o_stride, tmp, sizeof(float) * valid[v]);
      }
    }
  }
}

// Runs the OCB x NV micro-kernel over every slot of a task, in groups of NV (the last group
// padded with repeats of its first slot, whose results are dropped).
template <int OCB, int NV>
void forward_block(const Problem& p, const Slab& s, const std::vector<Slot>& slots,
                   const float* group_slab, const int64_t* tap_off, const float* w,
                   const float* bias, float* dst_o0, int64_t y0) {
  const int64_t cin = p.src_per_group();
  const int64_t out_plane = p.dst_h * p.dst_w;
  for (size_t first = 0; first < slots.size(); first += NV) {
    const float* in[NV];
    float* out[NV];
    int valid[NV];
    for (int v = 0; v < NV; ++v) {
      const size_t k = first + v < slots.size() ? first + v : first;
      const Slot& sl = slots[k];
      in[v] = group_slab + sl.r * p.sh * s.row_stride + sl.x0;
      out[v] = dst_o0 + (y0 + sl.r) * p.dst_w + sl.x0;
      valid[v] = first + v < slots.size()
                     ? static_cast<int>(std::min<int64_t>(kLanes, p.dst_w - sl.x0))
                     : 0;
    }
    forward_tile<OCB, NV>(in, s.channel_stride, tap_off, p.taps(), cin, w, cin * p.taps(), bias,
                          out, valid, out_plane);
  }
}

// The OCB channels in one block: 4 where a group has 4 or more, else what it has. With 12
// accumulators, fewer channels leave room for more pixel vectors.
template <int OCB>
void forward_channels(const Problem& p, const Slab& s, const std::vector<Slot>& slots,
                      const float* group_slab, const int64_t* tap_off, const float* w,
                      const float* bias, float* dst_o0, int64_t y0) {
  forward_block<OCB, kAccRegs / OCB>(p, s, slots, group_slab, tap_off, w, bias, dst_o0, y0);
}

// dst rows per task: enough slots to fill the micro-kernel when rows are narrow.
int64_t rows_per_task(const Problem& p) {
  const int64_t vectors_per_row = (p.dst_w + kLanes - 1) / kLanes;
  return std::clamp<int64_t>((kAccRegs + vectors_per_row - 1) / vectors_per_row, 1, p.dst_h);
}

void correlate(const Problem& p, const float* src, const float* w, const float* bias, float* dst) {
  const int64_t rows = rows_per_task(p);
  const int64_t blocks_per_image = (p.dst_h + rows - 1) / rows;
  const int64_t macs_per_task = rows * p.dst_w * p.dst_channels * p.src_per_group() * p.taps();
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, macs_per_task));
  at::parallel_for(0, p.batch * blocks_per_image, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> slab;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks_per_image;
      const int64_t y0 = (task % blocks_per_image) * rows;
      const int64_t task_rows = std::min(rows, p.dst_h - y0);
      const Slab s(p, task_rows);
      slab.resize(s.size(p));
      stage(p, s, src, n, y0, slab.data());
      const auto tap_off = tap_offsets(p, s);
      const auto slots = slots_of(p, task_rows);
      const int64_t cin = p.src_per_group();
      const int64_t cout = p.dst_per_group();
      for (int64_t g = 0; g < p.groups; ++g) {
        const float* group_slab = slab.data() + g * cin * s.channel_stride;
        for (int64_t o0 = g * cout; o0 < (g + 1) * cout; o0 += 4) {
          const float* wo = w + o0 * cin * p.taps();
          const float* bo = bias ? bias + o0 : nullptr;
          float* out = dst + (n * p.dst_channels + o0) * p.dst_h * p.dst_w;
          switch (std::min<int64_t>(4, (g + 1) * cout - o0)) {
            case 4: forward_channels<4>(p, s, slots, group_slab, tap_off.data(), wo, bo, out, y0); break;
            case 3: forward_channels<3>(p, s, slots, group_slab, tap_off.data(), wo, bo, out, y0); break;
            case 2: forward_channels<2>(p, s, slots, group_slab, tap_off.data(), wo, bo, out, y0); break;
            default: forward_channels<1>(p, s, slots, group_slab, tap_off.data(), wo, bo, out, y0); break;
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Weight gradient: grad_w[o, i, t] = sum over (n, y, x) of gy[n, o, y, x] * slab(i, y, x, t).
// Micro-kernel: OCB output channels x TB taps, all 12 accumulators kept as 8 lanes each across
// every pixel vector of a task's rows, then added into the task's lane buffer; lanes are summed
// (in a fixed order) once at the end. `gy[v]` points at slot v's 8 staged grad_output values of
// channel o0, zero past the row's end. MASKED is for the slots at the right edge: their lanes
// past the row's end would multiply that zero by whatever the slab holds there, and 0 * inf
// would put a NaN in a gradient that F.conv2d computes finite, so those lanes of the input are
// cleared instead.
alignas(32) const int32_t kLaneMask[2 * kLanes] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                   0,  0,  0,  0,  0,  0,  0,  0};

template <int OCB, int TB, bool MASKED>
CORR2D_AVX2 void weight_grad_tile(const float* const* in, const float* const* gy,
                                  const int* valid, int nv, int64_t gy_o_stride,
                                  const int64_t* tap_off, float* lanes, int64_t lanes_o_stride) {
  __m256 acc[OCB][TB];
  for (int j = 0; j < OCB; ++j)
    for (int t = 0; t < TB; ++t) acc[j][t] = _mm256_loadu_ps(lanes + j * lanes_o_stride + t * kLanes);
  for (int v = 0; v < nv; ++v) {
    __m256 g[OCB];
    for (int j = 0; j < OCB; ++j) g[j] = _mm256_loadu_ps(gy[v] + j * gy_o_stride);
    const float* mask = reinterpret_cast<const float*>(kLaneMask + kLanes - (MASKED ? valid[v] : kLanes));
    for (int t = 0; t < TB; ++t) {
      __m256 x = _mm256_loadu_ps(in[v] + tap_off[t]);
      if (MASKED) x = _mm256_and_ps(x, _mm256_loadu_ps(mask));
      for (int j = 0; j < OCB; ++j) acc[j][t] = _mm256_fmadd_ps(g[j], x, acc[j][t]);
    }
  }
  for (int j = 0; j < OCB; ++j)
    for (int t = 0; t < TB; ++t) _mm256_storeu_ps(lanes + j * lanes_o_stride + t * kLanes, acc[j][t]);
}

// The slots of a task, split into whole vectors and right-edge ones, with their pointers.
struct WeightGradSlots {
  std::vector<const float*> in, gy;
  std::vector<int> valid;
  int full = 0;  // the first `full` entries are whole vectors, the rest are partial
};

template <int OCB, int TB>
void weight_grad_taps(const WeightGradSlots& sl, int64_t gy_o_stride, const int64_t* tap_off,
                      int64_t taps, float* lanes, int64_t lanes_o_stride) {
  const int n_all = static_cast<int>(sl.in.size());
  const int n_part = n_all - sl.full;
  const float* const* in_p = sl.in.data() + sl.full;
  const float* const* gy_p = sl.gy.data() + sl.full;
  const int* valid_p = sl.valid.data() + sl.full;
  int64_t t = 0;
  for (; t + TB <= taps; t += TB) {
    weight_grad_tile<OCB, TB, false>(sl.in.data(), sl.gy.data(), sl.valid.data(), sl.full,
                                     gy_o_stride, tap_off + t, lanes + t * kLanes, lanes_o_stride);
    weight_grad_tile<OCB, TB, true>(in_p, gy_p, valid_p, n_part, gy_o_stride, tap_off + t,
                                    lanes + t * kLanes, lanes_o_stride);
  }
  for (; t < taps; ++t) {
    weight_grad_tile<OCB, 1, false>(sl.in.data(), sl.gy.data(), sl.valid.data(), sl.full,
                                    gy_o_stride, tap_off + t, lanes + t * kLanes, lanes_o_stride);
    weight_grad_tile<OCB, 1, true>(in_p, gy_p, valid_p, n_part, gy_o_stride, tap_off + t,
                                   lanes + t * kLanes, lanes_o_stride);
  }
}

// Chunks of the sum over (n, row block): a number fixed by the geometry, never by the thread
// count, each summed by one task into its own weight-sized partial; partials are then added
// in chunk order. That keeps the result bitwise the same for any number of threads.
constexpr int64_t kWeightGradChunks = 16;

void weight_grad_sum(const Problem& p, const float* src, const float* grad_out, float* grad_w) {
  const int64_t rows = rows_per_task(p);
  const int64_t blocks_per_image = (p.dst_h + rows - 1) / rows;
  const int64_t total_blocks = p.batch * blocks_per_image;
  const int64_t chunks = std::min(total_blocks, kWeightGradChunks);
  const int64_t blocks_per_chunk = (total_blocks + chunks - 1) / chunks;
  const int64_t cin = p.src_per_group();
  const int64_t cout = p.dst_per_group();
  const int64_t taps = p.taps();
  const int64_t w_numel = p.dst_channels * cin * taps;
  std::vector<float> partial(chunks * w_numel);

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> slab, gy_stage, lanes(w_numel * kLanes);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      std::fill(lanes.begin(), lanes.end(), 0.0f);
      const int64_t b_end = std::min(total_blocks, (chunk + 1) * blocks_per_chunk);
      for (int64_t b = chunk * blocks_per_chunk; b < b_end; ++b) {
        const int64_t n = b / blocks_per_image;
        const int64_t y0 = (b % blocks_per_image) * rows;
        const int64_t task_rows = std::min(rows, p.dst_h - y0);
        const Slab s(p, task_rows);
        slab.resize(s.size(p));
        stage(p, s, src, n, y0, slab.data());
        const auto tap_off = tap_offsets(p, s);
        const auto slots = slots_of(p, task_rows);
        // grad_output rows of this block, every channel, zero past each row's end.
        const int64_t gy_row = s.x_alloc;
        const int64_t gy_o_stride = task_rows * gy_row;
        gy_stage.assign(p.dst_channels * gy_o_stride, 0.0f);
        for (int64_t o = 0; o < p.dst_channels; ++o)
          for (int64_t r = 0; r < task_rows; ++r)
            std::memcpy(gy_stage.data() + o * gy_o_stride + r * gy_row,
                        grad_out + ((n * p.dst_channels + o) * p.dst_h + y0 + r) * p.dst_w,
                        sizeof(float) * p.dst_w);
        // Whole vectors first, right-edge ones after.
        std::vector<Slot> ordered;
        for (const Slot& sl : slots)
          if (sl.x0 + kLanes <= p.dst_w) ordered.push_back(sl);
        const int full = static_cast<int>(ordered.size());
        for (const Slot& sl : slots)
          if (sl.x0 + kLanes > p.dst_w) ordered.push_back(sl);
        WeightGradSlots ws;
        ws.full = full;
        ws.in.resize(ordered.size());
        ws.gy.resize(ordered.size());
        ws.valid.resize(ordered.size());
        for (size_t v = 0; v < ordered.size(); ++v)
          ws.valid[v] = static_cast<int>(std::min<int64_t>(kLanes, p.dst_w - ordered[v].x0));
        const int64_t l_o_stride = cin * taps * kLanes;
        for (int64_t g = 0; g < p.groups; ++g) {
          for (int64_t i = 0; i < cin; ++i) {
            const float* chan = slab.data() + (g * cin + i) * s.channel_stride;
            for (size_t v = 0; v < ordered.size(); ++v)
              ws.in[v] = chan + ordered[v].r * p.sh * s.row_stride + ordered[v].x0;
            for (int64_t o0 = g * cout; o0 < (g + 1) * cout; o0 += 4) {
              for (size_t v = 0; v < ordered.size(); ++v)
                ws.gy[v] = gy_stage.data() + o0 * gy_o_stride + ordered[v].r * gy_row + ordered[v].x0;
              float* l = lanes.data() + ((o0 * cin + i) * taps) * kLanes;
              const int64_t* to = tap_off.data();
              switch (std::min<int64_t>(4, (g + 1) * cout - o0)) {
                case 4: weight_grad_taps<4, 3>(ws, gy_o_stride, to, taps, l, l_o_stride); break;
                case 3: weight_grad_taps<3, 4>(ws, gy_o_stride, to, taps, l, l_o_stride); break;
                case 2: weight_grad_taps<2, 6>(ws, gy_o_stride, to, taps, l, l_o_stride); break;
                default: weight_grad_taps<1, 12>(ws, gy_o_stride, to, taps, l, l_o_stride); break;
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

bool handles_input_grad(const Geometry& g) { return g.rows.stride == 1 && g.cols.stride == 1; }

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
