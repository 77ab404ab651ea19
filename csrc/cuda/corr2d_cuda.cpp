// Host side of the CUDA backend: device guard, current stream, dtype dispatch, the weight
// gradient's workspace.
// Compiled by the C++ compiler, so the torch headers stay out of the .cu file.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../corr2d_ops.h"
#include "corr2d_cuda.h"

namespace corr2d_ext {
namespace cuda {
namespace {

// torch's element types and the CUDA types the kernels use have the same bits.
template <typename scalar_t>
struct Native {
  using type = scalar_t;
};
template <>
struct Native<at::Half> {
  using type = __half;
};
template <>
struct Native<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename scalar_t>
using native_t = typename Native<scalar_t>::type;

template <typename scalar_t>
const native_t<scalar_t>* in_ptr(const at::Tensor& t) {
  return reinterpret_cast<const native_t<scalar_t>*>(t.const_data_ptr<scalar_t>());
}
template <typename scalar_t>
native_t<scalar_t>* out_ptr(const at::Tensor& t) {
  return reinterpret_cast<native_t<scalar_t>*>(t.mutable_data_ptr<scalar_t>());
}

void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "corr2d_cuda", [&] {
    launch_forward(g, in_ptr<scalar_t>(input), in_ptr<scalar_t>(weight),
                   bias ? in_ptr<scalar_t>(*bias) : nullptr, out_ptr<scalar_t>(output), stream);
  });
}

void input_grad(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                const at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "corr2d_input_grad_cuda", [&] {
    launch_input_grad(g, in_ptr<scalar_t>(grad_output), in_ptr<scalar_t>(weight),
                      out_ptr<scalar_t>(grad_input), stream);
  });
}

void weight_grad(const Geometry& g, const at::Tensor& input, const at::Tensor& grad_output,
                 const at::Tensor& grad_weight) {
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const WeightGradPlan plan = plan_weight_grad(g);
  // Partial sums are kept in the accumulation type: float, or double for double.
  const auto acc_dtype = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor workspace =
      at::empty({weight_grad_workspace(g, plan)}, input.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "corr2d_weight_grad_cuda", [&] {
    launch_weight_grad(g, plan, in_ptr<scalar_t>(input), in_ptr<scalar_t>(grad_output),
                       workspace.numel() ? workspace.mutable_data_ptr() : nullptr,
                       out_ptr<scalar_t>(grad_weight), stream);
  });
}

}  // namespace

bool built() { return true; }

const Corr2dKernels& kernels() {
  static const Corr2dKernels k{&forward, &input_grad, &weight_grad};
  return k;
}

}  // namespace cuda
}  // namespace corr2d_ext
