// The boundary between the host launcher (corr2d_cuda.cpp, compiled by the C++ compiler with
// torch's headers) and the kernels (corr2d_kernel.cu, compiled by nvcc without them: a .cu
// that includes torch/extension.h takes minutes to compile).
//
// T is the CUDA-native element type: float, double, __half or __nv_bfloat16. All tensors are
// contiguous; every launch goes on `stream` and is followed by a launch check.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../corr2d.h"

namespace corr2d_ext {
namespace cuda {

// How the weight gradient's sum over (n, oh, ow) is cut up. Each block reduces one slice of
// that sum for one (oc, c) filter and up to kWeightGradTaps kernel taps; the slices' partial
// sums are then added in slice order. The plan depends on the geometry alone, never on the
// device or on timing, so the result is bitwise the same on every run.
constexpr int kWeightGradTaps = 9;

struct WeightGradPlan {
  int64_t tap_chunks;  // ceil(kernel_area / kWeightGradTaps)
  int64_t slices;      // 1 means the blocks write grad_weight directly
};

inline WeightGradPlan plan_weight_grad(const Geometry& g) {
  const int64_t filters = g.out_channels * g.in_channels_per_group();
  const int64_t tap_chunks = (g.kernel_area() + kWeightGradTaps - 1) / kWeightGradTaps;
  const int64_t sum_length = g.batch * g.output_plane();
  // Enough blocks to fill a large GPU (~132 SMs x a few blocks), but at least 2048 terms per
  // slice so that each of the 256 threads adds several before the block reduction.
  constexpr int64_t kTargetBlocks = 512;
  constexpr int64_t kMinSliceLength = 2048;
  const int64_t base = filters * tap_chunks;
  int64_t slices = (kTargetBlocks + base - 1) / base;
  const int64_t max_slices = (sum_length + kMinSliceLength - 1) / kMinSliceLength;
  if (slices > max_slices) slices = max_slices;
  if (slices < 1) slices = 1;
  return {tap_chunks, slices};
}

// Element count of the float (double for double) workspace launch_weight_grad needs: zero
// when plan.slices == 1.
inline int64_t weight_grad_workspace(const Geometry& g, const WeightGradPlan& plan) {
  if (plan.slices == 1) return 0;
  return g.out_channels * g.in_channels_per_group() * g.kernel_area() * plan.slices;
}

template <typename T>
void launch_forward(const Geometry& g, const T* input, const T* weight, const T* bias, T* output,
                    cudaStream_t stream);

template <typename T>
void launch_input_grad(const Geometry& g, const T* grad_output, const T* weight, T* grad_input,
                       cudaStream_t stream);

// workspace: weight_grad_workspace(g, plan) elements of float (double when T is double).
template <typename T>
void launch_weight_grad(const Geometry& g, const WeightGradPlan& plan, const T* input,
                        const T* grad_output, void* workspace, T* grad_weight,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace corr2d_ext
