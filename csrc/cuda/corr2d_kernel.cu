// CUDA kernels of the three ops.
//
// Order: element conversions, the forward-form kernels (tiled, and a direct fallback), which
// compute the forward and, stride phase by stride phase, the input gradient (forward_form.h);
// the weight gradient; then the launchers and their explicit instantiations.
//
// Nothing here uses atomics: every output element is written by one thread, and every sum is
// taken in an order fixed by the geometry, so two runs give bitwise-equal results.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <c10/cuda/CUDAException.h>

#include "corr2d_cuda.h"

namespace corr2d_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Element types: sums run in float for float, half and bfloat16, in double for double.

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

__device__ __forceinline__ float load(const float* p) { return __ldg(p); }
__device__ __forceinline__ double load(const double* p) { return __ldg(p); }
__device__ __forceinline__ float load(const __half* p) { return __half2float(__ldg(p)); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) {
  return __bfloat162float(__ldg(p));
}

template <typename T>
__device__ __forceinline__ T store_as(typename Acc<T>::type v);
template <>
__device__ __forceinline__ float store_as<float>(float v) { return v; }
template <>
__device__ __forceinline__ double store_as<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half store_as<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

constexpr int kThreads = 256;

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Grids are 1-D and every kernel loops over its work with a grid stride, so no size can
// overflow gridDim; this caps the grid at a size that fills any current GPU many times over.
unsigned int grid_for(int64_t work_items, int64_t per_block) {
  const int64_t blocks = ceil_div(work_items, per_block);
  return static_cast<unsigned int>(blocks < (int64_t{1} << 20) ? blocks : (int64_t{1} << 20));
}

// ---------------------------------------------------------------------------------------------
// Forward, tiled.
//
// A block computes an output tile of th rows x (tw * PW) columns for ocs * OCB output channels
// of one group of one image. Thread (tx, ty, os) computes PW pixels of row ty, tw columns apart
// (so a warp reads consecutive shared-memory words), for the OCB channels os * OCB + j. For each
// input channel of the group the block stages, in shared memory, the input patch the tile reads
// (zeros where it covers padding) and the weights of that input channel, laid out tap-major
// ([tap][ocs * OCB]) so that a thread's OCB weights of one tap are one or two 16-byte loads.
// Every staged input value is reused OCB times and every weight PW times from registers.
//
// The tile's shape comes from the output's (TileShape, chosen by the launcher): a 14-wide output
// gets rows of 4 threads, not 32, and the threads a small image leaves over take further output
// channels instead of idling. The block has only the threads the shape uses (rounded up to a
// warp), so idle lanes cost no issue slots beyond the last warp's.
//
// Index arithmetic is 32-bit: the launcher takes this kernel only when every in-plane index,
// patch corner and staged size fits (tiled_fits_int32); plane bases are 64-bit.
//
// The weight is read through a WeightLayout and the output written through a DstLayout
// (forward_form.h): OIHW and contiguous NCHW for the forward; for an input-gradient phase, the
// sub-kernel flipped and transposed in place, and every stride-th pixel of grad_input.
//
// OCB = 1 is the path for one output channel per group (single-channel images, depthwise
// layers, the input gradient of layers with one input channel per group).

constexpr int kTileThreads = 256;  // at most this many threads per block

struct TileShape {
  int tw;           // threads along a tile row
  int th;           // tile rows (threads along a column)
  int ocs;          // thread groups over output channels, OCB channels each
  int threads;      // tw * th * ocs (blockDim.x is this rounded up to 32)
  int patch_rows;
  int patch_cols;
  int patch_words;  // patch_rows * patch_cols rounded up to 4, so the weights are 16-byte aligned
  int64_t tiles_w;
  int64_t tiles_h;
  int64_t oc_blocks;  // per group, of ocs * OCB channels
};

// Host: the tile shape for an output, PW pixels per thread, OCB channels per thread group.
// Rows of ceil(W_out / PW) threads (at most 32); then as many rows as fill 256 threads (128
// when the group has channels for two thread groups), evened out over the tiles of a column;
// then channel groups for the threads left.
template <int OCB, int PW>
TileShape tile_shape_for(const Geometry& g) {
  TileShape s{};
  const int64_t want_tw = ceil_div(g.cols.output, PW);
  s.tw = static_cast<int>(want_tw < 32 ? want_tw : 32);
  s.tiles_w = ceil_div(g.cols.output, int64_t{s.tw} * PW);
  // With channels to spare, rows for half the block only: the other half takes a second
  // channel group, so each staged patch serves twice the channels.
  const int64_t ocs_want = ceil_div(g.out_channels_per_group(), OCB);
  const int64_t th_max = (ocs_want >= 2 ? kTileThreads / 2 : kTileThreads) / s.tw;
  s.tiles_h = ceil_div(g.rows.output, th_max);
  s.th = static_cast<int>(ceil_div(g.rows.output, s.tiles_h));
  const int64_t ocs_max = kTileThreads / (s.tw * s.th);
  s.ocs = static_cast<int>(ocs_want < ocs_max ? ocs_want : ocs_max);
  s.threads = s.tw * s.th * s.ocs;
  s.oc_blocks = ceil_div(g.out_channels_per_group(), int64_t{s.ocs} * OCB);
  return s;
}

// The shared memory a block may use without opting in to more, on every GPU since Kepler.
constexpr int64_t kSharedBytes = 48 * 1024;

// Fills the patch fields of s and returns the shared memory a block needs, or more than
// kSharedBytes when it cannot fit. Strides and dilations up to 2^31 - 1 make each patch side
// < 2^39, but their product can pass 2^63, so the sides are tested before they are multiplied.
template <typename T, int OCB, int PW>
int64_t tiled_shared_bytes(const Geometry& g, TileShape& s) {
  constexpr int64_t elem = sizeof(typename Acc<T>::type);
  constexpr int64_t max_words = kSharedBytes / elem;
  const int64_t rows = (s.th - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1;
  const int64_t cols =
      (int64_t{s.tw} * PW - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation + 1;
  if (rows > max_words || cols > max_words || g.kernel_area() > max_words) return kSharedBytes + 1;
  const int64_t words = (rows * cols + 3) / 4 * 4;
  const int64_t bytes = (words + int64_t{s.ocs} * OCB * g.kernel_area()) * elem;
  if (bytes > kSharedBytes) return bytes;
  s.patch_rows = static_cast<int>(rows);
  s.patch_cols = static_cast<int>(cols);
  s.patch_words = static_cast<int>(words);
  return bytes;
}

// Whether the tiled kernel's offsets within a block's weights of one src channel (j * wl.dst +
// the tap's, for the block's oct channels j) are exact in 32 bits. Called after
// tiled_shared_bytes has bounded the kernel area.
inline bool block_weights_fit_int32(const Geometry& g, const TileShape& s, int ocb,
                                    const WeightLayout& wl) {
  constexpr int64_t lim = (int64_t{1} << 31) - 1;
  const auto mag = [](int64_t v) { return v < 0 ? -v : v; };
  if (mag(wl.dst) >= lim || mag(wl.tap_row) >= lim || mag(wl.tap_col) >= lim) return false;
  // each term < 2^31 * 2^31: no int64 overflow
  const int64_t channels = int64_t{s.ocs} * ocb - 1;
  return channels * mag(wl.dst) < lim && (g.rows.kernel - 1) * mag(wl.tap_row) < lim &&
         (g.cols.kernel - 1) * mag(wl.tap_col) < lim &&
         channels * mag(wl.dst) + (g.rows.kernel - 1) * mag(wl.tap_row) +
                 (g.cols.kernel - 1) * mag(wl.tap_col) <
             lim;
}

// OCB consecutive staged weights into registers: 16-byte loads where OCB allows (the launcher
// keeps the staged weights 16-byte aligned and OCB-strided), else one word at a time.
template <int OCB>
__device__ __forceinline__ void load_weights(const float* p, float (&w)[OCB]) {
  if constexpr (OCB % 4 == 0) {
#pragma unroll
    for (int v = 0; v < OCB / 4; ++v) {
      const float4 q = reinterpret_cast<const float4*>(p)[v];
      w[4 * v] = q.x;
      w[4 * v + 1] = q.y;
      w[4 * v + 2] = q.z;
      w[4 * v + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < OCB; ++j) w[j] = p[j];
  }
}
template <int OCB>
__device__ __forceinline__ void load_weights(const double* p, double (&w)[OCB]) {
  if constexpr (OCB % 2 == 0) {
#pragma unroll
    for (int v = 0; v < OCB / 2; ++v) {
      const double2 q = reinterpret_cast<const double2*>(p)[v];
      w[2 * v] = q.x;
      w[2 * v + 1] = q.y;
    }
  } else {
#pragma unroll
    for (int j = 0; j < OCB; ++j) w[j] = p[j];
  }
}

// 4 blocks of 256 threads per SM for 4-byte sums (at most 64 registers), 2 for double.
template <typename T, int OCB, int PW>
__global__ void __launch_bounds__(kTileThreads, sizeof(typename Acc<T>::type) == 8 ? 2 : 4)
    forward_tiled_kernel(Geometry g, TileShape s, WeightLayout wl, DstLayout dl,
                         const T* __restrict__ input, const T* __restrict__ weight,
                         const T* __restrict__ bias, T* __restrict__ output) {
  using acc_t = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* staged_input = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* staged_weight = staged_input + s.patch_words;

  const int in_w = static_cast<int>(g.cols.input);
  const int in_h = static_cast<int>(g.rows.input);
  const int out_w = static_cast<int>(g.cols.output);
  const int out_h = static_cast<int>(g.rows.output);
  const int kh_n = static_cast<int>(g.rows.kernel);
  const int kw_n = static_cast<int>(g.cols.kernel);
  const int ka = kh_n * kw_n;
  const int64_t cin_g = g.in_channels_per_group();
  const int cout_g = static_cast<int>(g.out_channels_per_group());
  const int oct = s.ocs * OCB;  // channels per block
  const int64_t n_blocks = g.batch * g.groups * s.oc_blocks * s.tiles_h * s.tiles_w;

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int warps = blockDim.x / 32;
  const int os = tid / (s.tw * s.th);
  const int ty = (tid / s.tw) % s.th;
  const int tx = tid % s.tw;
  // Per-thread offsets of the hot loop, fixed for the whole kernel.
  const int x_step = s.tw * static_cast<int>(g.cols.stride);  // between a thread's PW pixels
  const int x_base = ty * static_cast<int>(g.rows.stride) * s.patch_cols +
                     tx * static_cast<int>(g.cols.stride);
  const int row_step = static_cast<int>(g.rows.dilation) * s.patch_cols;
  // within a block's weights of one src channel (the launcher checks that these fit)
  const int w_dst = static_cast<int>(wl.dst);
  const int w_row = static_cast<int>(wl.tap_row), w_col = static_cast<int>(wl.tap_col);
  const int col_step = static_cast<int>(g.cols.dilation);

  for (int64_t b = blockIdx.x; b < n_blocks; b += gridDim.x) {
    const int64_t tw_i = b % s.tiles_w;
    const int64_t th_i = (b / s.tiles_w) % s.tiles_h;
    const int64_t gob = (b / (s.tiles_w * s.tiles_h)) % (g.groups * s.oc_blocks);
    const int64_t n = b / (s.tiles_w * s.tiles_h * g.groups * s.oc_blocks);
    const int64_t group = gob / s.oc_blocks;
    const int oc_base = static_cast<int>(gob % s.oc_blocks) * oct;  // within the group
    const int oc_count = min(oct, cout_g - oc_base);                // channels this block owns
    const int oh0 = static_cast<int>(th_i) * s.th;
    const int ow0 = static_cast<int>(tw_i) * s.tw * PW;
    // the patch's top-left, possibly in the padding
    const int ih0 = oh0 * static_cast<int>(g.rows.stride) - static_cast<int>(g.rows.padding);
    const int iw0 = ow0 * static_cast<int>(g.cols.stride) - static_cast<int>(g.cols.padding);
    const int oh = oh0 + ty;
    const bool computes = tid < s.threads && oh < out_h && os * OCB < oc_count;

    acc_t acc[OCB][PW];
#pragma unroll
    for (int j = 0; j < OCB; ++j) {
      const int jb = os * OCB + j;  // the channel's index in the block
      const acc_t b0 = (bias != nullptr && computes && jb < oc_count)
                           ? static_cast<acc_t>(load(bias + group * cout_g + oc_base + jb))
                           : acc_t(0);
#pragma unroll
      for (int p = 0; p < PW; ++p) acc[j][p] = b0;
    }

    const T* w_block = weight + wl.offset + group * wl.group + oc_base * wl.dst;
    for (int64_t c = 0; c < cin_g; ++c) {
      const T* plane = input + g.input_offset(n, g.first_input_channel(group) + c);
      const T* w_src = w_block + c * wl.src;
      __syncthreads();  // the previous channel's reads are done before its patch is replaced
      // Patch: a warp per row, a lane per column; zeros outside the image.
      for (int r = warp; r < s.patch_rows; r += warps) {
        const int ih = ih0 + r;
        const bool row_inside = ih >= 0 && ih < in_h;
        const T* src = plane + (row_inside ? ih : 0) * in_w;
        acc_t* dst = staged_input + r * s.patch_cols;
        for (int col = lane; col < s.patch_cols; col += 32) {
          const int iw = iw0 + col;
          dst[col] = row_inside && iw >= 0 && iw < in_w ? static_cast<acc_t>(load(src + iw))
                                                        : acc_t(0);
        }
      }
      // Weights, tap-major; zeros for the channels past the group's end.
      for (int tap = warp; tap < ka; tap += warps) {
        const int tap_at = (tap / kw_n) * w_row + (tap % kw_n) * w_col;
        for (int j = lane; j < oct; j += 32)
          staged_weight[tap * oct + j] =
              j < oc_count ? static_cast<acc_t>(load(w_src + (j * w_dst + tap_at))) : acc_t(0);
      }
      __syncthreads();
      if (computes) {
        const acc_t* x_row = staged_input + x_base;
        const acc_t* w_tap = staged_weight + os * OCB;
        for (int kh = 0; kh < kh_n; ++kh, x_row += row_step) {
          const acc_t* x_col = x_row;
          for (int kw = 0; kw < kw_n; ++kw, x_col += col_step, w_tap += oct) {
            acc_t x[PW];
#pragma unroll
            for (int p = 0; p < PW; ++p) x[p] = x_col[p * x_step];
            acc_t w[OCB];
            load_weights<OCB>(w_tap, w);
#pragma unroll
            for (int j = 0; j < OCB; ++j)
#pragma unroll
              for (int p = 0; p < PW; ++p) acc[j][p] += w[j] * x[p];
          }
        }
      }
    }

    if (computes) {
#pragma unroll
      for (int j = 0; j < OCB; ++j) {
        const int jb = os * OCB + j;
        if (jb >= oc_count) break;
        // the thread's first pixel; its next ones are s.tw columns on
        T* out_px = output + dl.offset + n * dl.image +
                    (group * cout_g + oc_base + jb) * dl.channel + oh * dl.row +
                    (ow0 + tx) * dl.col;
        const int64_t px_step = s.tw * dl.col;
#pragma unroll
        for (int p = 0; p < PW; ++p)
          if (ow0 + tx + p * s.tw < out_w) out_px[p * px_step] = store_as<T>(acc[j][p]);
      }
    }
  }
}

// Forward, direct: one thread per output element, reading global memory. For geometries whose
// patch does not fit in shared memory (very large strides or dilations) or whose indices need
// 64 bits. Layouts as the tiled kernel's.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_direct_kernel(Geometry g, WeightLayout wl, DstLayout dl, const T* __restrict__ input,
                          const T* __restrict__ weight, const T* __restrict__ bias,
                          T* __restrict__ output) {
  using acc_t = typename Acc<T>::type;
  const Axis rows = g.rows;
  const Axis cols = g.cols;
  const int64_t total = g.batch * g.out_channels * g.output_plane();
  const int64_t cin_g = g.in_channels_per_group();
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ow = idx % cols.output;
    const int64_t oh = (idx / cols.output) % rows.output;
    const int64_t oc = (idx / g.output_plane()) % g.out_channels;
    const int64_t n = idx / (g.output_plane() * g.out_channels);
    const int64_t group = g.group_of_output_channel(oc);
    const int64_t c0 = g.first_input_channel(group);
    acc_t acc = bias != nullptr ? static_cast<acc_t>(load(bias + oc)) : acc_t(0);
    // Every tap, padded ones too: zero padding multiplies zeros by the weights, which is NaN
    // for an inf weight, as in F.conv2d's reference paths and in the tiled kernel.
    for (int64_t c = 0; c < cin_g; ++c) {
      const T* plane = input + g.input_offset(n, c0 + c);
      const T* w = weight + wl.offset + group * wl.group +
                   (oc - group * g.out_channels_per_group()) * wl.dst + c * wl.src;
      for (int64_t kh = 0; kh < rows.kernel; ++kh) {
        const int64_t ih = rows.input_index(oh, kh);
        for (int64_t kw = 0; kw < cols.kernel; ++kw) {
          const int64_t iw = cols.input_index(ow, kw);
          const bool inside = ih >= 0 && ih < rows.input && iw >= 0 && iw < cols.input;
          const acc_t x = inside ? static_cast<acc_t>(load(plane + ih * cols.input + iw)) : acc_t(0);
          acc += static_cast<acc_t>(load(w + kh * wl.tap_row + kw * wl.tap_col)) * x;
        }
      }
    }
    output[dl.offset + n * dl.image + oc * dl.channel + oh * dl.row + ow * dl.col] =
        store_as<T>(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// The input gradient's pixels that no kernel tap reaches (those of the stride phases without
// taps, forward_form.h: every other pixel of a 1x1 kernel at stride 2, say): zeros. One launch
// for all such phases; the phases with taps write the other pixels. g is the op's geometry.

// Whether input index i of axis a lies in a phase with taps: some tap k has i + padding - k *
// dilation divisible by the stride (input_grad_phases' test, which depends on i mod stride
// only). At most kernel steps.
__device__ __forceinline__ bool phase_has_taps(const Axis& a, int64_t i) {
  for (int64_t k = 0; k < a.kernel; ++k)
    if ((i + a.padding - k * a.dilation) % a.stride == 0) return true;
  return false;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    zero_unreached_kernel(Geometry g, T* __restrict__ grad_input) {
  const int64_t total = g.batch * g.in_channels * g.input_plane();
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = idx % g.cols.input;
    const int64_t ih = (idx / g.cols.input) % g.rows.input;
    if (!phase_has_taps(g.rows, ih) || !phase_has_taps(g.cols, iw))
      grad_input[idx] = store_as<T>(typename Acc<T>::type(0));
  }
}

// ---------------------------------------------------------------------------------------------
// Weight gradient: a blocked reduction (see WeightGradPlan). Block (filter, tap chunk, slice):
// its 256 threads stride through the slice of the sum over (n, oh, ow), each loading one
// grad_output value per step and multiplying it into up to 9 tap accumulators; the block then
// reduces each tap with a fixed shuffle tree. Neighbouring threads take neighbouring output
// pixels, so both grad_output and input loads are coalesced.

template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  __syncthreads();  // scratch is free (an earlier call's readers are done)
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = 0;
  if (warp == 0) {
    v = lane < kThreads / 32 ? scratch[lane] : acc_t(0);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;  // valid in thread 0
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_grad_kernel(Geometry g, WeightGradPlan plan, const T* __restrict__ input,
                       const T* __restrict__ grad_output,
                       typename Acc<T>::type* __restrict__ partial, T* __restrict__ grad_weight) {
  using acc_t = typename Acc<T>::type;
  __shared__ acc_t scratch[kThreads / 32];
  const Axis rows = g.rows;
  const Axis cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t ka = g.kernel_area();
  const int64_t filters = g.out_channels * cin_g;
  const int64_t n_blocks = filters * plan.tap_chunks * plan.slices;
  const int64_t sum_length = g.batch * g.output_plane();
  const int64_t slice_length = (sum_length + plan.slices - 1) / plan.slices;

  for (int64_t b = blockIdx.x; b < n_blocks; b += gridDim.x) {
    const int64_t slice = b % plan.slices;
    const int64_t chunk = (b / plan.slices) % plan.tap_chunks;
    const int64_t filter = b / (plan.slices * plan.tap_chunks);
    const int64_t oc = filter / cin_g;
    const int64_t c = g.first_input_channel(g.group_of_output_channel(oc)) + filter % cin_g;
    const int64_t tap0 = chunk * kWeightGradTaps;
    const int taps = static_cast<int>(min64(kWeightGradTaps, ka - tap0));
    int64_t kh[kWeightGradTaps], kw[kWeightGradTaps];
#pragma unroll
    for (int j = 0; j < kWeightGradTaps; ++j) {
      kh[j] = (tap0 + j) / cols.kernel;
      kw[j] = (tap0 + j) % cols.kernel;
    }
    acc_t acc[kWeightGradTaps];
#pragma unroll
    for (int j = 0; j < kWeightGradTaps; ++j) acc[j] = 0;

    const int64_t r_end = min64(sum_length, (slice + 1) * slice_length);
    for (int64_t r = slice * slice_length + threadIdx.x; r < r_end; r += kThreads) {
      const int64_t ow = r % cols.output;
      const int64_t oh = (r / cols.output) % rows.output;
      const int64_t n = r / g.output_plane();
      const acc_t gy =
          static_cast<acc_t>(load(grad_output + g.output_offset(n, oc) + oh * cols.output + ow));
      const T* plane = input + g.input_offset(n, c);
#pragma unroll
      for (int j = 0; j < kWeightGradTaps; ++j) {
        if (j < taps) {
          const int64_t ih = rows.input_index(oh, kh[j]);
          const int64_t iw = cols.input_index(ow, kw[j]);
          // Padded positions are zeros, multiplied like the rest (inf * 0 is NaN).
          const bool inside = ih >= 0 && ih < rows.input && iw >= 0 && iw < cols.input;
          acc[j] += gy * (inside ? static_cast<acc_t>(load(plane + ih * cols.input + iw)) : acc_t(0));
        }
      }
    }

    // Unrolled with a uniform test (taps is the same for the whole block), so that acc stays in
    // registers and every thread reaches the same barriers.
#pragma unroll
    for (int j = 0; j < kWeightGradTaps; ++j) {
      if (j < taps) {
        const acc_t sum = block_sum(acc[j], scratch);
        if (threadIdx.x == 0) {
          const int64_t e = filter * ka + tap0 + j;
          if (plan.slices == 1)
            grad_weight[e] = store_as<T>(sum);
          else
            partial[e * plan.slices + slice] = sum;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weight gradient, tiled: grad_weight[oc, c, tap] = sum over (n, oh, ow) of
// grad_output[n, oc, oh, ow] * input[n, c, oh * stride - padding + tap's offset], a product of
// a (channels x pixels) and a (pixels x taps) matrix that is never formed.
//
// A block owns OCB output channels of one group x tile.channels input channels x up to
// tile.warps * TB taps (a "tap chunk"), and one slice of the sum: a contiguous run of
// output tiles of tile_rows x tile_cols pixels of one image each. For every tile it stages the
// output channels' grad_output values (pixel-major, so a thread's 8 channels are two 16-byte
// loads; each serves every input channel of the block) and, per input channel, the input patch
// the tile's taps read. Warp w takes TB taps of one input channel; its lanes take the tile's
// pixels 32 apart (stepping through the tile without a division), each lane accumulating
// OCB x TB sums in registers; every staged input value serves OCB FMAs and every grad_output
// value TB. OCB x TB is 8 x 3, or 1 x 9 for one output channel per group. At the end each warp adds its lanes with a fixed shuffle
// tree, and the slices' partial sums are added in slice order by sum_slices_kernel: no
// atomics, the same bits on every run.
//
// Index arithmetic inside a plane is 32-bit (the launcher checks tiled_fits_int32).


// At most 80 registers (3 blocks of 256 threads per SM; the usual 3-warp blocks of a 3x3
// kernel fit 8 per SM): at 64 the 24 sums, 3 tap offsets and 8 grad_output values spill.
template <typename T, int OCB, int TB>
__global__ void __launch_bounds__(kThreads, sizeof(typename Acc<T>::type) == 8 ? 2 : 3)
    weight_grad_tiled_kernel(Geometry g, WeightGradPlan plan, WgTile t,
                             const T* __restrict__ input, const T* __restrict__ grad_output,
                             typename Acc<T>::type* __restrict__ partial,
                             T* __restrict__ grad_weight) {
  using acc_t = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* staged_input = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* staged_gy = staged_input + t.channels * t.patch_words;  // [pixel][OCB]

  const int in_w = static_cast<int>(g.cols.input);
  const int in_h = static_cast<int>(g.rows.input);
  const int out_w = static_cast<int>(g.cols.output);
  const int out_h = static_cast<int>(g.rows.output);
  const int kw_n = static_cast<int>(g.cols.kernel);
  const int ka = static_cast<int>(g.kernel_area());
  const int64_t cin_g = g.in_channels_per_group();
  const int cout_g = static_cast<int>(g.out_channels_per_group());
  const int sh = static_cast<int>(g.rows.stride), sw = static_cast<int>(g.cols.stride);
  const int tile_px = t.tile_rows * t.tile_cols;
  const int64_t n_blocks = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * plan.slices;
  const int64_t slice_tiles = (t.tiles + plan.slices - 1) / plan.slices;

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int threads = blockDim.x;
  const int warp_taps = warp % t.warps;  // this warp's taps within the chunk
  const int warp_c = warp / t.warps;     // and its input channel within the block
  // A lane's first pixel in a tile, and the step to its next one (32 pixels on), as row and
  // column increments with one carry: no division in the loop.
  const int row0 = lane / t.tile_cols, col0 = lane % t.tile_cols;
  const int row_step = 32 / t.tile_cols, col_step = 32 % t.tile_cols;

  for (int64_t b = blockIdx.x; b < n_blocks; b += gridDim.x) {
    const int64_t slice = b % plan.slices;
    const int64_t chunk = (b / plan.slices) % plan.tap_chunks;
    const int64_t c_block = (b / (plan.slices * plan.tap_chunks)) % t.c_blocks;
    const int64_t gob = b / (plan.slices * plan.tap_chunks * t.c_blocks);
    const int64_t c0 = c_block * t.channels;  // the block's first input channel, in the group
    const int c_count = static_cast<int>(min64(t.channels, cin_g - c0));
    const int64_t c = c0 + warp_c;
    const bool c_inside = warp_c < c_count;
    const int64_t group = gob / t.oc_blocks;
    const int oc_base = static_cast<int>(gob % t.oc_blocks) * OCB;  // within the group
    const int oc_count = min(OCB, cout_g - oc_base);
    // This warp's taps and their offsets in the patch; taps past the kernel read offset 0 and
    // are never stored.
    const int tap0 = (static_cast<int>(chunk) * t.warps + warp_taps) * TB;
    int tap_off[TB];
#pragma unroll
    for (int i = 0; i < TB; ++i) {
      const int tap = tap0 + i < ka ? tap0 + i : 0;
      tap_off[i] = (tap / kw_n) * static_cast<int>(g.rows.dilation) * t.patch_cols +
                   (tap % kw_n) * static_cast<int>(g.cols.dilation);
    }
    acc_t acc[OCB][TB];
#pragma unroll
    for (int j = 0; j < OCB; ++j)
#pragma unroll
      for (int i = 0; i < TB; ++i) acc[j][i] = 0;

    const int64_t tile_end = min64(t.tiles, (slice + 1) * slice_tiles);
    for (int64_t tile = slice * slice_tiles; tile < tile_end; ++tile) {
      const int64_t tw_i = tile % t.tiles_w;
      const int64_t th_i = (tile / t.tiles_w) % t.tiles_h;
      const int64_t n = tile / (t.tiles_w * t.tiles_h);
      const int oh0 = static_cast<int>(th_i) * t.tile_rows;
      const int ow0 = static_cast<int>(tw_i) * t.tile_cols;
      const int rows_valid = min(t.tile_rows, out_h - oh0);
      const int cols_valid = min(t.tile_cols, out_w - ow0);
      const int ih0 = oh0 * sh - static_cast<int>(g.rows.padding);
      const int iw0 = ow0 * sw - static_cast<int>(g.cols.padding);
      const T* gy_plane = grad_output + g.output_offset(n, group * cout_g + oc_base);
      __syncthreads();  // the previous tile's reads are done before it is replaced
      for (int ci = 0; ci < c_count; ++ci) {
        const T* plane = input + g.input_offset(n, g.first_input_channel(group) + c0 + ci);
        for (int r = warp; r < t.patch_rows; r += threads / 32) {
          const int ih = ih0 + r;
          const bool row_inside = ih >= 0 && ih < in_h;
          const T* src = plane + (row_inside ? ih : 0) * in_w;
          acc_t* dst = staged_input + ci * t.patch_words + r * t.patch_cols;
          for (int col = lane; col < t.patch_cols; col += 32) {
            const int iw = iw0 + col;
            dst[col] = row_inside && iw >= 0 && iw < in_w ? static_cast<acc_t>(load(src + iw))
                                                          : acc_t(0);
          }
        }
      }
      // grad_output: zeros for the tile's pixels past the output and the channels past the
      // group's end.
      for (int r = warp; r < t.tile_rows; r += threads / 32) {
        for (int col = lane; col < t.tile_cols; col += 32) {
          acc_t* dst = staged_gy + (r * t.tile_cols + col) * OCB;
          const bool inside = r < rows_valid && col < cols_valid;
          const int64_t at = int64_t{oh0 + r} * out_w + ow0 + col;
#pragma unroll
          for (int j = 0; j < OCB; ++j)
            dst[j] = inside && j < oc_count
                         ? static_cast<acc_t>(load(gy_plane + j * g.output_plane() + at))
                         : acc_t(0);
        }
      }
      __syncthreads();
      if (tap0 < ka && c_inside) {
        const acc_t* patch = staged_input + warp_c * t.patch_words;
        int row = row0, col = col0;
        for (int p = lane; p < tile_px; p += 32) {
          // Pixels past the output are skipped, not multiplied by their zero: the input under
          // them may be inf.
          if (row < rows_valid && col < cols_valid) {
            const acc_t* x_at = patch + row * sh * t.patch_cols + col * sw;
            acc_t x[TB];
#pragma unroll
            for (int i = 0; i < TB; ++i) x[i] = x_at[tap_off[i]];
            acc_t gy[OCB];
            load_weights<OCB>(staged_gy + p * OCB, gy);
#pragma unroll
            for (int j = 0; j < OCB; ++j)
#pragma unroll
              for (int i = 0; i < TB; ++i) acc[j][i] += gy[j] * x[i];
          }
          col += col_step;
          row += row_step;
          if (col >= t.tile_cols) {
            col -= t.tile_cols;
            ++row;
          }
        }
      }
    }

    // Each warp's lanes, added with a fixed tree; lane 0 writes.
#pragma unroll
    for (int j = 0; j < OCB; ++j)
#pragma unroll
      for (int i = 0; i < TB; ++i)
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2)
          acc[j][i] += __shfl_down_sync(0xffffffffu, acc[j][i], offset);
    if (lane == 0 && c_inside) {
#pragma unroll
      for (int j = 0; j < OCB; ++j) {
#pragma unroll
        for (int i = 0; i < TB; ++i) {
          if (j < oc_count && tap0 + i < ka) {
            const int64_t oc = group * cout_g + oc_base + j;
            const int64_t e = (oc * cin_g + c) * ka + tap0 + i;
            if (plan.slices == 1)
              grad_weight[e] = store_as<T>(acc[j][i]);
            else
              partial[e * plan.slices + slice] = acc[j][i];
          }
        }
      }
    }
  }
}

// grad_weight[e] = the slices' partial sums, added in slice order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sum_slices_kernel(int64_t elements, int64_t slices,
                      const typename Acc<T>::type* __restrict__ partial,
                      T* __restrict__ grad_weight) {
  using acc_t = typename Acc<T>::type;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < elements;
       e += int64_t{gridDim.x} * blockDim.x) {
    acc_t sum = 0;
    for (int64_t s = 0; s < slices; ++s) sum += partial[e * slices + s];
    grad_weight[e] = store_as<T>(sum);
  }
}

template <typename T, int OCB, int PW>
bool try_forward_tiled(const Geometry& g, const WeightLayout& wl, const DstLayout& dl,
                       const T* input, const T* weight, const T* bias, T* output,
                       cudaStream_t stream) {
  if (!tiled_fits_int32(g)) return false;
  TileShape s = tile_shape_for<OCB, PW>(g);
  const int64_t bytes = tiled_shared_bytes<T, OCB, PW>(g, s);
  if (bytes > kSharedBytes || !block_weights_fit_int32(g, s, OCB, wl)) return false;
  const int64_t blocks = g.batch * g.groups * s.oc_blocks * s.tiles_h * s.tiles_w;
  const int threads = (s.threads + 31) / 32 * 32;
  forward_tiled_kernel<T, OCB, PW><<<grid_for(blocks, 1), threads, bytes, stream>>>(
      g, s, wl, dl, input, weight, bias, output);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

// A forward-form correlation (forward_form.h) through the tiled kernel where it fits, else the
// direct one.
template <typename T>
void correlate(const Geometry& g, const WeightLayout& wl, const DstLayout& dl, const T* input,
               const T* weight, const T* bias, T* output, cudaStream_t stream) {
  // One output channel per group (single-channel images, depthwise layers, and the input
  // gradient of layers with one input channel per group): nothing to block over channels.
  const bool tiled =
      g.out_channels_per_group() == 1
          ? try_forward_tiled<T, 1, kPixelsOneToOne>(g, wl, dl, input, weight, bias, output,
                                                     stream)
          : try_forward_tiled<T, kChannelBlock, kPixels>(g, wl, dl, input, weight, bias, output,
                                                         stream);
  if (tiled) return;
  const int64_t total = g.batch * g.out_channels * g.output_plane();
  forward_direct_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      g, wl, dl, input, weight, bias, output);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void launch_forward(const Geometry& g, const T* input, const T* weight, const T* bias, T* output,
                    cudaStream_t stream) {
  correlate(g, forward_weight_layout(g), contiguous_dst_layout(g), input, weight, bias, output,
            stream);
}

template <typename T>
void launch_input_grad(const Geometry& g, const T* grad_output, const T* weight, T* grad_input,
                       cudaStream_t stream) {
  // Each launch writes its own pixels of grad_input (the phases partition them), so none
  // depends on another; a stride larger than the kernel leaves most phases without taps, and
  // one launch zeroes them all.
  bool unreached = false;
  for (const InputGradPhase& p : input_grad_phases(g)) {
    if (p.taps)
      correlate(p.g, p.wl, p.dst, grad_output, weight, static_cast<const T*>(nullptr),
                grad_input, stream);
    else
      unreached = true;
  }
  if (unreached) {
    const int64_t total = g.batch * g.in_channels * g.input_plane();
    zero_unreached_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(g, grad_input);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename T>
void launch_weight_grad(const Geometry& g, const WeightGradPlan& plan, const T* input,
                        const T* grad_output, void* workspace, T* grad_weight,
                        cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  acc_t* partial = static_cast<acc_t*>(workspace);
  const int64_t filters = g.out_channels * g.in_channels_per_group();
  if (plan.tiled) {
    const WgTile& t = plan.tile;
    const int64_t blocks = g.groups * t.oc_blocks * t.c_blocks * plan.tap_chunks * plan.slices;
    const int64_t bytes =
        (int64_t{t.channels} * t.patch_words + int64_t{t.tile_rows} * t.tile_cols * t.ocb) *
        sizeof(acc_t);
    const unsigned grid = grid_for(blocks, 1);
    const int threads = 32 * t.warps * t.channels;
    if (t.ocb == 1)
      weight_grad_tiled_kernel<T, 1, kWgTapsOneChannel><<<grid, threads, bytes, stream>>>(
          g, plan, t, input, grad_output, partial, grad_weight);
    else
      weight_grad_tiled_kernel<T, kWgChannels, kWgTaps><<<grid, threads, bytes, stream>>>(
          g, plan, t, input, grad_output, partial, grad_weight);
  } else {
    const int64_t blocks = filters * plan.tap_chunks * plan.slices;
    weight_grad_kernel<T><<<grid_for(blocks, 1), kThreads, 0, stream>>>(
        g, plan, input, grad_output, partial, grad_weight);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (plan.slices > 1) {
    const int64_t elements = filters * g.kernel_area();
    sum_slices_kernel<T><<<grid_for(elements, kThreads), kThreads, 0, stream>>>(
        elements, plan.slices, partial, grad_weight);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

#define CORR2D_INSTANTIATE(T)                                                                    \
  template void launch_forward<T>(const Geometry&, const T*, const T*, const T*, T*,            \
                                  cudaStream_t);                                                \
  template void launch_input_grad<T>(const Geometry&, const T*, const T*, T*, cudaStream_t);    \
  template void launch_weight_grad<T>(const Geometry&, const WeightGradPlan&, const T*,         \
                                      const T*, void*, T*, cudaStream_t);

CORR2D_INSTANTIATE(float)
CORR2D_INSTANTIATE(double)
CORR2D_INSTANTIATE(__half)
CORR2D_INSTANTIATE(__nv_bfloat16)

}  // namespace cuda
}  // namespace corr2d_ext
