// The fast path for AArch64 (Graviton, Grace, Apple, Jetson): NEON, 4 floats or 2 doubles a
// register, 32 registers. NEON is the architecture's baseline, so no target attribute and no
// run-time check are needed.
#include "../simd/neon.h"

#define CORR2D_TARGET
#include "../ukernels.h"

#include "../cpu.h"

namespace corr2d_ext {
namespace cpu {
namespace isa {
namespace {
bool supported() { return true; }
using K = Instantiation<NeonF32, NeonF64>;
}  // namespace

const IsaKernels& neon() {
  static const IsaKernels k{"neon", &supported, true, NeonF32::lanes,
                            {&K::forward, &K::input_grad, &K::weight_grad},
                            {&K::forward_channels_last, &K::input_grad_channels_last,
                             &K::weight_grad_channels_last}};
  return k;
}

}  // namespace isa
}  // namespace cpu
}  // namespace corr2d_ext
