// What corr2d.cpp hands to each backend: contiguous tensors, an allocated output, and a
// validated Geometry. The kernels behind these declarations only compute; every check and
// every output-size computation happens once, in corr2d.cpp, before they are called.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "corr2d.h"

namespace corr2d_ext {

// The three ops of one backend. All tensors are contiguous NCHW (weight OIHW) of the dtype
// and device of the input; outputs are allocated with their final sizes and are not empty.
// Except: a backend that `takes_channels_last` (the CPU's) is handed a channels_last call's
// tensors contiguous in that format (NHWC), its result included, and the weight OIHW or, where
// it is channels_last itself, OHWI (the forward and the input gradient read it by strides).
struct Corr2dKernels {
  // output = corr2d(input, weight) + bias
  void (*forward)(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, const at::Tensor& output);
  // grad_input = the correlation's adjoint in its input, applied to grad_output
  void (*input_grad)(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                     const at::Tensor& grad_input);
  // grad_weight = the correlation's adjoint in its weight, applied to grad_output
  void (*weight_grad)(const Geometry& g, const at::Tensor& input, const at::Tensor& grad_output,
                      const at::Tensor& grad_weight);
  bool takes_channels_last = false;
};

namespace cpu {
const Corr2dKernels& kernels();
}

namespace cuda {
// Whether this build has CUDA kernels; kernels() raises a rebuild hint when it has not.
bool built();
const Corr2dKernels& kernels();
}

}  // namespace corr2d_ext
