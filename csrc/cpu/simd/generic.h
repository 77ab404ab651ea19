// Vector traits over GCC/Clang vector extensions, for any lane count and register budget.
//
// Two uses. On a CPU without a dedicated traits header this is a portable vector path; and,
// instantiated with another ISA's width and register count (16 lanes and 32 registers, as
// AVX-512; 4 lanes and 32 registers, as NEON), it runs that ISA's planner, tile shapes, lane
// and tail logic on any machine, so a CI host with AVX2 only still tests the AVX-512 path's
// arithmetic. The compiler lowers a 64-byte vector into pairs or quads of whatever the target
// has, which is slow but exact: every operation is lane-wise IEEE arithmetic, fused as the
// real ISA fuses it (fma below is a single rounding, like vfmadd).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace corr2d_ext {
namespace cpu {

template <typename Scalar, int Lanes, int Registers>
struct GenericVec {
  using scalar = Scalar;
  typedef Scalar reg __attribute__((vector_size(sizeof(Scalar) * Lanes)));
  static constexpr int lanes = Lanes;
  static constexpr int registers = Registers;

  static inline reg zero() { return reg{}; }
  static inline reg set1(scalar v) { return reg{} + v; }
  static inline reg load(const scalar* p) {
    reg r;
    std::memcpy(&r, p, sizeof(reg));
    return r;
  }
  static inline void store(scalar* p, reg v) { std::memcpy(p, &v, sizeof(reg)); }
  // acc + a * b with one rounding per lane.
  static inline reg fma(reg a, reg b, reg acc) {
    for (int k = 0; k < Lanes; ++k) acc[k] = std::fma(a[k], b[k], acc[k]);
    return acc;
  }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  static inline reg even_lanes(reg a, reg b) { return pick(a, b, 0); }
  static inline reg odd_lanes(reg a, reg b) { return pick(a, b, 1); }
  static inline reg pick(reg a, reg b, int first) {
    reg r;
    for (int k = 0; k < Lanes; ++k) {
      const int i = 2 * k + first;
      r[k] = i < Lanes ? a[i] : b[i - Lanes];
    }
    return r;
  }
  // The inverse: a0 b0 a1 b1 ... of phases a (even columns) and b (odd ones), its first lanes
  // (low) and its next lanes (high).
  static inline reg interleave_low(reg a, reg b) { return zip(a, b, 0); }
  static inline reg interleave_high(reg a, reg b) { return zip(a, b, Lanes / 2); }
  static inline reg zip(reg a, reg b, int first) {
    reg r{};  // every lane is set below; the zeros keep GCC 12's -Wmaybe-uninitialized quiet
    for (int k = 0; k < Lanes; ++k) r[k] = k % 2 ? b[first + k / 2] : a[first + k / 2];
    return r;
  }
  // The first n lanes from p, zeros in the others; memory past p + n is not read.
  static inline reg load_first(const scalar* p, int n) {
    reg r{};
    for (int k = 0; k < n; ++k) r[k] = p[k];
    return r;
  }
  // v's first n lanes to p; memory past p + n is not written.
  static inline void store_first(scalar* p, reg v, int n) {
    for (int k = 0; k < n; ++k) p[k] = v[k];
  }
  // Loads and stores from another element type: converted on the way in, rounded once on the
  // way out, with c10's own conversions (round to nearest even), so every instantiation rounds
  // exactly as the portable kernels do.
  template <typename T>
  static inline reg load_from(const T* p) {
    if constexpr (std::is_same_v<T, scalar>) {
      return load(p);
    } else {
      reg r;
      for (int k = 0; k < Lanes; ++k) r[k] = static_cast<scalar>(p[k]);
      return r;
    }
  }
  template <typename T>
  static inline void store_to(T* p, reg v) {
    if constexpr (std::is_same_v<T, scalar>) {
      store(p, v);
    } else {
      for (int k = 0; k < Lanes; ++k) p[k] = static_cast<T>(v[k]);
    }
  }
};

}  // namespace cpu
}  // namespace corr2d_ext
