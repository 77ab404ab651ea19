// CUDA kernels of the three ops.
//
// Order: element conversions, the forward kernels (tiled, and a direct fallback), the input
// gradient, the weight gradient, then the launchers and their explicit instantiations.
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
// A block of 32 x 8 threads computes an output tile of 8 rows x (32 * PW) columns for OCB output
// channels of one group of one image. For each input channel of the group it stages, in shared
// memory, the input patch the tile reads (zeros where the patch covers padding) and the OCB
// channels' weights for that input channel; each thread then computes PW pixels (32 columns
// apart, so a warp reads consecutive shared-memory words) for all OCB channels, reusing every
// staged input value OCB times and every weight PW times from registers.
//
// OCB = 1, PW = 4 is the path for one input and one output channel per group: single-channel
// images and depthwise layers, where there is no channel reuse to be had and more pixels per
// thread pay instead.

constexpr int kTileCols = 32;  // threads along a row; blockDim = (32, 8)
constexpr int kTileRows = 8;

// The input patch one tile reads.
struct Patch {
  int64_t rows;
  int64_t cols;
};

template <int PW>
Patch patch_of(const Geometry& g) {
  return {(kTileRows - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1,
          (kTileCols * PW - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation + 1};
}

// The shared memory a block may use without opting in to more, on every GPU since Kepler.
constexpr int64_t kSharedBytes = 48 * 1024;

// Shared memory a tiled block needs, or more than kSharedBytes when it cannot fit. Strides and
// dilations up to 2^31 - 1 make each patch side < 2^39, but their product can pass 2^63, so the
// sides are tested before they are multiplied.
template <typename T, int OCB, int PW>
int64_t tiled_shared_bytes(const Geometry& g) {
  constexpr int64_t elem = sizeof(typename Acc<T>::type);
  constexpr int64_t max_words = kSharedBytes / elem;
  const Patch p = patch_of<PW>(g);
  if (p.rows > max_words || p.cols > max_words) return kSharedBytes + 1;
  return (p.rows * p.cols + OCB * g.kernel_area()) * elem;
}

template <typename T, int OCB, int PW>
__global__ void __launch_bounds__(kThreads)
    forward_tiled_kernel(Geometry g, Patch patch, const T* __restrict__ input,
                         const T* __restrict__ weight, const T* __restrict__ bias,
                         T* __restrict__ output) {
  using acc_t = typename Acc<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* staged_input = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* staged_weight = staged_input + patch.rows * patch.cols;

  const Axis rows = g.rows;
  const Axis cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t cout_g = g.out_channels_per_group();
  const int64_t ka = g.kernel_area();
  const int64_t oc_blocks = (cout_g + OCB - 1) / OCB;
  const int64_t tiles_h = (rows.output + kTileRows - 1) / kTileRows;
  const int64_t tiles_w = (cols.output + kTileCols * PW - 1) / (kTileCols * PW);
  const int64_t n_blocks = g.batch * g.groups * oc_blocks * tiles_h * tiles_w;
  const int tid = threadIdx.y * kTileCols + threadIdx.x;
  const int patch_size = static_cast<int>(patch.rows * patch.cols);  // < 48 KiB

  for (int64_t b = blockIdx.x; b < n_blocks; b += gridDim.x) {
    const int64_t tw = b % tiles_w;
    const int64_t th = (b / tiles_w) % tiles_h;
    const int64_t ocb = (b / (tiles_w * tiles_h)) % (g.groups * oc_blocks);
    const int64_t n = b / (tiles_w * tiles_h * g.groups * oc_blocks);
    const int64_t group = ocb / oc_blocks;
    const int64_t oc0 = group * cout_g + (ocb % oc_blocks) * OCB;
    const int oc_count = static_cast<int>(min64(OCB, group * cout_g + cout_g - oc0));
    const int64_t oh0 = th * kTileRows;
    const int64_t ow0 = tw * kTileCols * PW;
    const int64_t ih0 = rows.input_index(oh0, 0);  // the patch's top-left, possibly in padding
    const int64_t iw0 = cols.input_index(ow0, 0);
    const int64_t oh = oh0 + threadIdx.y;

    acc_t acc[OCB][PW];
#pragma unroll
    for (int j = 0; j < OCB; ++j) {
      const acc_t b0 = (bias != nullptr && j < oc_count) ? static_cast<acc_t>(load(bias + oc0 + j)) : acc_t(0);
#pragma unroll
      for (int p = 0; p < PW; ++p) acc[j][p] = b0;
    }

    for (int64_t c = 0; c < cin_g; ++c) {
      const T* plane = input + g.input_offset(n, g.first_input_channel(group) + c);
      __syncthreads();  // the previous channel's reads are done before its patch is replaced
      for (int i = tid; i < patch_size; i += kThreads) {
        const int64_t ih = ih0 + i / patch.cols;
        const int64_t iw = iw0 + i % patch.cols;
        const bool inside = ih >= 0 && ih < rows.input && iw >= 0 && iw < cols.input;
        staged_input[i] = inside ? static_cast<acc_t>(load(plane + ih * cols.input + iw)) : acc_t(0);
      }
      for (int i = tid; i < oc_count * ka; i += kThreads) {
        const int j = static_cast<int>(i / ka);
        staged_weight[i] = static_cast<acc_t>(load(weight + g.weight_offset(oc0 + j, c) + i % ka));
      }
      __syncthreads();
      if (oh < rows.output) {
        for (int64_t kh = 0; kh < rows.kernel; ++kh) {
          const acc_t* patch_row = staged_input +
                                   (threadIdx.y * rows.stride + kh * rows.dilation) * patch.cols;
          for (int64_t kw = 0; kw < cols.kernel; ++kw) {
            acc_t x[PW];
#pragma unroll
            for (int p = 0; p < PW; ++p)
              x[p] = patch_row[(threadIdx.x + p * kTileCols) * cols.stride + kw * cols.dilation];
#pragma unroll
            for (int j = 0; j < OCB; ++j) {
              if (j < oc_count) {
                const acc_t w = staged_weight[j * ka + kh * cols.kernel + kw];
#pragma unroll
                for (int p = 0; p < PW; ++p) acc[j][p] += w * x[p];
              }
            }
          }
        }
      }
    }

    if (oh < rows.output) {
#pragma unroll
      for (int j = 0; j < OCB; ++j) {
        if (j >= oc_count) break;
        T* out_row = output + g.output_offset(n, oc0 + j) + oh * cols.output;
#pragma unroll
        for (int p = 0; p < PW; ++p) {
          const int64_t ow = ow0 + threadIdx.x + p * kTileCols;
          if (ow < cols.output) out_row[ow] = store_as<T>(acc[j][p]);
        }
      }
    }
  }
}

// Forward, direct: one thread per output element, reading global memory. For geometries whose
// patch does not fit in shared memory (very large strides or dilations).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_direct_kernel(Geometry g, const T* __restrict__ input, const T* __restrict__ weight,
                          const T* __restrict__ bias, T* __restrict__ output) {
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
    const int64_t c0 = g.first_input_channel(g.group_of_output_channel(oc));
    acc_t acc = bias != nullptr ? static_cast<acc_t>(load(bias + oc)) : acc_t(0);
    // Every tap, padded ones too: zero padding multiplies zeros by the weights, which is NaN
    // for an inf weight, as in F.conv2d's reference paths and in the tiled kernel.
    for (int64_t c = 0; c < cin_g; ++c) {
      const T* plane = input + g.input_offset(n, c0 + c);
      const T* w = weight + g.weight_offset(oc, c);
      for (int64_t kh = 0; kh < rows.kernel; ++kh) {
        const int64_t ih = rows.input_index(oh, kh);
        for (int64_t kw = 0; kw < cols.kernel; ++kw) {
          const int64_t iw = cols.input_index(ow, kw);
          const bool inside = ih >= 0 && ih < rows.input && iw >= 0 && iw < cols.input;
          const acc_t x = inside ? static_cast<acc_t>(load(plane + ih * cols.input + iw)) : acc_t(0);
          acc += static_cast<acc_t>(load(w + kh * cols.kernel + kw)) * x;
        }
      }
    }
    output[idx] = store_as<T>(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Input gradient: a gather. One thread owns one input pixel of ICB channels of one group and
// sums every (output channel, tap) that read it: through tap (kh, kw) the pixel was read by
// output (rows.output_index(ih, kh), cols.output_index(iw, kw)), if any. Each grad_output value
// loaded serves ICB channels. Neighbouring threads own neighbouring pixels, so the loads of
// grad_output are coalesced for stride 1.

constexpr int kInputGradChannels = 4;

template <typename T, int ICB>
__global__ void __launch_bounds__(kThreads)
    input_grad_kernel(Geometry g, const T* __restrict__ grad_output, const T* __restrict__ weight,
                      T* __restrict__ grad_input) {
  using acc_t = typename Acc<T>::type;
  const Axis rows = g.rows;
  const Axis cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t cout_g = g.out_channels_per_group();
  const int64_t ka = g.kernel_area();
  const int64_t c_blocks = (cin_g + ICB - 1) / ICB;
  const int64_t total = g.batch * g.groups * c_blocks * g.input_plane();
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = idx % cols.input;
    const int64_t ih = (idx / cols.input) % rows.input;
    const int64_t cb = (idx / g.input_plane()) % (g.groups * c_blocks);
    const int64_t n = idx / (g.input_plane() * g.groups * c_blocks);
    const int64_t group = cb / c_blocks;
    const int64_t c0 = (cb % c_blocks) * ICB;  // within the group
    const int c_count = static_cast<int>(min64(ICB, cin_g - c0));
    acc_t acc[ICB];
#pragma unroll
    for (int j = 0; j < ICB; ++j) acc[j] = 0;
    for (int64_t kh = 0; kh < rows.kernel; ++kh) {
      const int64_t oh = rows.output_index(ih, kh);
      if (oh < 0) continue;
      for (int64_t kw = 0; kw < cols.kernel; ++kw) {
        const int64_t ow = cols.output_index(iw, kw);
        if (ow < 0) continue;
        for (int64_t oc = group * cout_g; oc < (group + 1) * cout_g; ++oc) {
          const acc_t gy = static_cast<acc_t>(
              load(grad_output + g.output_offset(n, oc) + oh * cols.output + ow));
          const T* w = weight + g.weight_offset(oc, c0) + kh * cols.kernel + kw;
#pragma unroll
          for (int j = 0; j < ICB; ++j)
            if (j < c_count) acc[j] += gy * static_cast<acc_t>(load(w + j * ka));
        }
      }
    }
    T* dst = grad_input + g.input_offset(n, group * cin_g + c0) + ih * cols.input + iw;
#pragma unroll
    for (int j = 0; j < ICB; ++j)
      if (j < c_count) dst[j * g.input_plane()] = store_as<T>(acc[j]);
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
bool try_forward_tiled(const Geometry& g, const T* input, const T* weight, const T* bias,
                       T* output, cudaStream_t stream) {
  const int64_t bytes = tiled_shared_bytes<T, OCB, PW>(g);
  if (bytes > kSharedBytes) return false;
  const int64_t oc_blocks = ceil_div(g.out_channels_per_group(), OCB);
  const int64_t tiles =
      ceil_div(g.rows.output, kTileRows) * ceil_div(g.cols.output, kTileCols * PW);
  const int64_t blocks = g.batch * g.groups * oc_blocks * tiles;
  forward_tiled_kernel<T, OCB, PW><<<grid_for(blocks, 1), dim3(kTileCols, kTileRows), bytes, stream>>>(
      g, patch_of<PW>(g), input, weight, bias, output);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

}  // namespace

template <typename T>
void launch_forward(const Geometry& g, const T* input, const T* weight, const T* bias, T* output,
                    cudaStream_t stream) {
  const bool one_to_one = g.in_channels_per_group() == 1 && g.out_channels_per_group() == 1;
  if (one_to_one ? try_forward_tiled<T, 1, 4>(g, input, weight, bias, output, stream)
                 : try_forward_tiled<T, 8, 2>(g, input, weight, bias, output, stream))
    return;
  const int64_t total = g.batch * g.out_channels * g.output_plane();
  forward_direct_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(g, input, weight,
                                                                               bias, output);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_input_grad(const Geometry& g, const T* grad_output, const T* weight, T* grad_input,
                       cudaStream_t stream) {
  constexpr int ICB = kInputGradChannels;
  const int64_t total =
      g.batch * g.groups * ceil_div(g.in_channels_per_group(), ICB) * g.input_plane();
  input_grad_kernel<T, ICB><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
      g, grad_output, weight, grad_input);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_weight_grad(const Geometry& g, const WeightGradPlan& plan, const T* input,
                        const T* grad_output, void* workspace, T* grad_weight,
                        cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  acc_t* partial = static_cast<acc_t*>(workspace);
  const int64_t filters = g.out_channels * g.in_channels_per_group();
  const int64_t blocks = filters * plan.tap_chunks * plan.slices;
  weight_grad_kernel<T><<<grid_for(blocks, 1), kThreads, 0, stream>>>(g, plan, input, grad_output,
                                                                      partial, grad_weight);
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
