// The CPU backend's two paths: the portable kernels (every dtype, every CPU) in
// corr2d_kernel.cpp, and the AVX2 float32 kernels in corr2d_avx2.cpp, chosen at run time.
#pragma once

#include "../corr2d.h"

namespace corr2d_ext {
namespace cpu {

// Whether float32 calls may take the AVX2 path when the CPU has it (a test hook: the tests
// hold the two paths against each other). On by default.
void set_fast_path_enabled(bool enabled);
bool fast_path_enabled();

namespace avx2 {
// Whether this CPU has AVX2 and FMA.
bool supported();
void forward(const Geometry& g, const float* input, const float* weight, const float* bias,
             float* output);
// The input gradient's fast path covers stride 1 with finite weights; other strides take the
// portable kernel, and so do non-finite weights (the fast path correlates grad_output padded
// with zeros, and inf * 0 there would be a NaN that F.conv2d's input gradient does not have).
bool handles_input_grad(const Geometry& g, const float* weight);
void input_grad(const Geometry& g, const float* grad_output, const float* weight,
                float* grad_input);
void weight_grad(const Geometry& g, const float* input, const float* grad_output,
                 float* grad_weight);
}  // namespace avx2

}  // namespace cpu
}  // namespace corr2d_ext
