// The fast path for x86-64 CPUs with AVX-512 F, BW, VL and DQ (Skylake-SP, Ice Lake, Sapphire
// Rapids, Zen 4 and later): 16 floats or 8 doubles a register, 32 registers.
// GCC 12's own avx512fintrin.h starts some intrinsics from an undefined register, which
// -Wmaybe-uninitialized (or -Wuninitialized) reports once per instantiation; the lanes it means
// are all written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "../simd/avx512.h"

#define CORR2D_TARGET CORR2D_AVX512_TARGET
#include "../ukernels.h"

#include "../cpu.h"

namespace corr2d_ext {
namespace cpu {
namespace isa {
namespace {
bool supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
using K = Instantiation<Avx512F32, Avx512F64>;
}  // namespace

const IsaKernels& avx512() {
  static const IsaKernels k{"avx512", &supported, true, Avx512F32::lanes,
                            {&K::forward, &K::input_grad, &K::weight_grad},
                            {&K::forward_channels_last, &K::input_grad_channels_last,
                             &K::weight_grad_channels_last}};
  return k;
}

}  // namespace isa
}  // namespace cpu
}  // namespace corr2d_ext
