// What corr2d.cpp and autograd.cpp share: the three ops as called through the dispatcher, and
// the memory-format rule of their results.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>
#include <c10/core/SymIntArrayRef.h>

namespace corr2d_ext {

using Corr2dSig = at::Tensor(const at::Tensor&, const at::Tensor&,
                             const std::optional<at::Tensor>&, at::IntArrayRef, at::IntArrayRef,
                             at::IntArrayRef, int64_t);
using InputGradSig = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                                at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t);
using WeightGradSig = InputGradSig;

// Handles looked up once: a lookup by name on every call would cost more than a tiny
// correlation. Calls through them go through every dispatch key (autograd, vmap, autocast).
const c10::TypedOperatorHandle<Corr2dSig>& corr2d_op();
const c10::TypedOperatorHandle<InputGradSig>& input_grad_op();
const c10::TypedOperatorHandle<WeightGradSig>& weight_grad_op();

// channels_last when either tensor suggests it (ATen's rule for convolutions; see corr2d.cpp).
at::MemoryFormat result_format(const at::Tensor& a, const at::Tensor& b);

}  // namespace corr2d_ext
