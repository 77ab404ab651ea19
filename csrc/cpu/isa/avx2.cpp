// The fast path for x86-64 CPUs with AVX2, FMA and F16C (Haswell, Zen and later): 8 floats or
// 4 doubles a register, 16 registers. The build targets plain x86-64; only the micro-kernels
// carry the AVX2 target, and dispatch runs them only after checking the CPU.
#include "../simd/avx2.h"

#define CORR2D_TARGET CORR2D_AVX2_TARGET
#include "../ukernels.h"

#include "../cpu.h"

namespace corr2d_ext {
namespace cpu {
namespace isa {
namespace {
bool supported() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
using K = Instantiation<Avx2F32, Avx2F64>;
}  // namespace

const IsaKernels& avx2() {
  static const IsaKernels k{"avx2", &supported, true, Avx2F32::lanes,
                            {&K::forward, &K::input_grad, &K::weight_grad},
                            {&K::forward_channels_last, &K::input_grad_channels_last,
                             &K::weight_grad_channels_last}};
  return k;
}

}  // namespace isa
}  // namespace cpu
}  // namespace corr2d_ext
