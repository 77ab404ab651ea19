// The same templates over GCC/Clang vector extensions, with each real ISA's lanes and register
// count, for the tests: on any machine they run the planner, tile shapes, lane tails and
// conversions of the 16-lane (AVX-512), 8-lane (AVX2) and 4-lane (NEON) instantiations, so a
// CI host without AVX-512 or NEON still tests those paths' logic. Built for the baseline
// target, where the compiler splits the wide vectors: exact, but slow, and never chosen by
// default.
// Test instantiations: optimized lightly, since at -O3 this file (three widths, four dtypes)
// took most of the build's time, and these run only in tests. The arithmetic and its order
// are the templates' own at any optimization level.
#pragma GCC optimize("O1")

// The wide vector types change the calling convention of functions that pass them by value;
// every such function is internal to this file, so the warning about it does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "../simd/generic.h"

#define CORR2D_TARGET
#include "../ukernels.h"

#include "../cpu.h"

namespace corr2d_ext {
namespace cpu {
namespace isa {
namespace {
bool always() { return true; }
template <int Lanes, int Registers>
using K = Instantiation<GenericVec<float, Lanes, Registers>,
                        GenericVec<double, Lanes / 2, Registers>>;
}  // namespace

const IsaKernels& generic16() {
  static const IsaKernels k{"generic16", &always, false, 16,
                            {&K<16, 32>::forward, &K<16, 32>::input_grad, &K<16, 32>::weight_grad},
                            {&K<16, 32>::forward_channels_last,
                             &K<16, 32>::input_grad_channels_last,
                             &K<16, 32>::weight_grad_channels_last}};
  return k;
}
const IsaKernels& generic8() {
  static const IsaKernels k{"generic8", &always, false, 8,
                            {&K<8, 16>::forward, &K<8, 16>::input_grad, &K<8, 16>::weight_grad},
                            {&K<8, 16>::forward_channels_last,
                             &K<8, 16>::input_grad_channels_last,
                             &K<8, 16>::weight_grad_channels_last}};
  return k;
}
const IsaKernels& generic4() {
  static const IsaKernels k{"generic4", &always, false, 4,
                            {&K<4, 32>::forward, &K<4, 32>::input_grad, &K<4, 32>::weight_grad},
                            {&K<4, 32>::forward_channels_last,
                             &K<4, 32>::input_grad_channels_last,
                             &K<4, 32>::weight_grad_channels_last}};
  return k;
}

}  // namespace isa
}  // namespace cpu
}  // namespace corr2d_ext
