// The CPU backend: the portable reference kernels, the fast-path instantiations (one per ISA,
// plus generic ones that exercise other widths' logic anywhere), and the dispatch that picks
// one of them once, from the CPU's features.
//
//   portable.cpp      direct loops, every dtype, any CPU: the reference path
//   plan.{h,cpp}      ISA-neutral: staging layout, task cutting, slots, reduction order
//   simd/*.h          vector traits per ISA (avx2, avx512, neon) and a generic one
//   ukernels.h        micro-kernels and drivers, templates over the traits
//   isa/*.cpp         one instantiation each, under its ISA's target attribute
//   dispatch.cpp      the kernel table: CPU features and dtype -> an instantiation
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "../corr2d.h"
#include "../corr2d_ops.h"

namespace corr2d_ext {
namespace cpu {

// One instantiation of the fast path: every dtype (float32, float64, bfloat16, float16), every
// geometry.
struct IsaKernels {
  const char* name;
  bool (*supported)();  // whether this CPU can run it
  bool native;          // an ISA's own instructions, chosen by default where supported; the
                        // generic instantiations are for tests only
  int float_lanes;
  Corr2dKernels ops;    // the op family's kernel table (corr2d_ops.h), run by this instantiation
  // The same ops with their image operands NHWC (grad_weight still OIHW), for geometries that
  // channels_last_fits (plan.h); dispatch.cpp decides which a call takes.
  Corr2dKernels channels_last;
};

// The instantiations this build has (each compiled only where its target exists).
namespace isa {
#if defined(__x86_64__) || defined(_M_X64)
const IsaKernels& avx512();
const IsaKernels& avx2();
#endif
#if defined(__aarch64__)
const IsaKernels& neon();
#endif
// GCC/Clang vector extensions with another ISA's lanes and register count: generic16 has
// AVX-512's, generic8 AVX2's, generic4 NEON's.
const IsaKernels& generic16();
const IsaKernels& generic8();
const IsaKernels& generic4();
}  // namespace isa

namespace portable {
void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output);
void input_grad(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                const at::Tensor& grad_input);
void weight_grad(const Geometry& g, const at::Tensor& input, const at::Tensor& grad_output,
                 const at::Tensor& grad_weight);
}  // namespace portable

// Dispatch and its test hook. Names: an instantiation's name, "portable" (the reference loops
// for every call), or "auto" (the best native instantiation this CPU runs; the default, which
// the environment variable CORR2D_CPU_ISA may override at import).
std::vector<std::string> available_isas();  // what this CPU can run, best first
std::string selected_isa();
void select_isa(const std::string& name);
// Problems with fewer multiply-adds than this take the portable kernels whatever is selected.
int64_t fast_path_min_macs();

}  // namespace cpu
}  // namespace corr2d_ext
