// Vector traits for AArch64 NEON (Advanced SIMD, part of every AArch64 CPU): 32 registers of 4
// floats or 2 doubles. No target attribute is needed: NEON is the baseline of the architecture.
// Compiled only on aarch64 (see isa/neon.cpp).
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace corr2d_ext {
namespace cpu {

struct NeonF32 {
  using scalar = float;
  using reg = float32x4_t;
  static constexpr int lanes = 4;
  static constexpr int registers = 32;

  static inline reg zero() { return vdupq_n_f32(0.0f); }
  static inline reg set1(float v) { return vdupq_n_f32(v); }
  static inline reg load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, reg v) { vst1q_f32(p, v); }
  static inline reg fma(reg a, reg b, reg acc) { return vfmaq_f32(acc, a, b); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  static inline reg even_lanes(reg a, reg b) { return vuzp1q_f32(a, b); }
  static inline reg odd_lanes(reg a, reg b) { return vuzp2q_f32(a, b); }
  // The inverse: a0 b0 a1 b1 of phases a (even columns) and b (odd ones), low and high halves.
  static inline reg interleave_low(reg a, reg b) { return vzip1q_f32(a, b); }
  static inline reg interleave_high(reg a, reg b) { return vzip2q_f32(a, b); }
  // The first n lanes from p, zeros in the others; memory past p + n is not read (NEON has
  // no masked load: through a zeroed buffer).
  static inline reg load_first(const float* p, int n) {
    alignas(16) float tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < n; ++k) tmp[k] = p[k];
    return vld1q_f32(tmp);
  }
  // v's first n lanes to p; memory past p + n is not written.
  static inline void store_first(float* p, reg v, int n) {
    alignas(16) float tmp[lanes];
    store(tmp, v);
    for (int k = 0; k < n; ++k) p[k] = tmp[k];
  }
  template <typename T>
  static inline reg load_from(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
      return load(p);
    } else if constexpr (std::is_same_v<T, c10::Half>) {
      return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
    } else {
      static_assert(std::is_same_v<T, c10::BFloat16>);
      // bfloat16 is the top half of a float.
      const uint16x4_t h = vld1_u16(reinterpret_cast<const uint16_t*>(p));
      return vreinterpretq_f32_u32(vshlq_n_u32(vmovl_u16(h), 16));
    }
  }
  template <typename T>
  static inline void store_to(T* p, reg v) {
    if constexpr (std::is_same_v<T, float>) {
      store(p, v);
    } else if constexpr (std::is_same_v<T, c10::Half>) {
      // On aarch64 c10::Half converts through the hardware's float16_t, so the vector convert
      // (round to nearest even, NaN kept a NaN) gives its bits exactly.
      vst1_u16(reinterpret_cast<uint16_t*>(p), vreinterpret_u16_f16(vcvt_f16_f32(v)));
    } else {
      static_assert(std::is_same_v<T, c10::BFloat16>);
      // Baseline AArch64 has no bfloat16 convert (BFCVTN is Armv8.6): round to nearest even and
      // NaN -> 0x7fc0, bit for bit as c10::BFloat16's constructor. No lane wraps: the largest
      // non-NaN pattern, 0xff7fffff, plus 0x8000 stays below 2^32.
      const uint32x4_t bits = vreinterpretq_u32_f32(v);
      const uint32x4_t lsb = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
      const uint16x4_t rounded =
          vshrn_n_u32(vaddq_u32(vaddq_u32(bits, vdupq_n_u32(0x7fff)), lsb), 16);
      const uint16x4_t is_number = vmovn_u32(vceqq_f32(v, v));
      vst1_u16(reinterpret_cast<uint16_t*>(p), vbsl_u16(is_number, rounded, vdup_n_u16(0x7fc0)));
    }
  }
};

struct NeonF64 {
  using scalar = double;
  using reg = float64x2_t;
  static constexpr int lanes = 2;
  static constexpr int registers = 32;

  static inline reg zero() { return vdupq_n_f64(0.0); }
  static inline reg set1(double v) { return vdupq_n_f64(v); }
  static inline reg load(const double* p) { return vld1q_f64(p); }
  static inline void store(double* p, reg v) { vst1q_f64(p, v); }
  static inline reg fma(reg a, reg b, reg acc) { return vfmaq_f64(acc, a, b); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  static inline reg even_lanes(reg a, reg b) { return vuzp1q_f64(a, b); }
  static inline reg odd_lanes(reg a, reg b) { return vuzp2q_f64(a, b); }
  static inline reg interleave_low(reg a, reg b) { return vzip1q_f64(a, b); }
  static inline reg interleave_high(reg a, reg b) { return vzip2q_f64(a, b); }
  static inline reg load_first(const double* p, int n) {
    alignas(16) double tmp[2] = {0.0, 0.0};
    for (int k = 0; k < n; ++k) tmp[k] = p[k];
    return vld1q_f64(tmp);
  }
  // v's first n lanes to p; memory past p + n is not written.
  static inline void store_first(double* p, reg v, int n) {
    alignas(16) double tmp[lanes];
    store(tmp, v);
    for (int k = 0; k < n; ++k) p[k] = tmp[k];
  }
  template <typename T>
  static inline reg load_from(const T* p) {
    static_assert(std::is_same_v<T, double>);
    return load(p);
  }
  template <typename T>
  static inline void store_to(T* p, reg v) {
    static_assert(std::is_same_v<T, double>);
    store(p, v);
  }
};

}  // namespace cpu
}  // namespace corr2d_ext
