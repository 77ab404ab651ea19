// Vector traits for AVX-512 (F, BW, VL, DQ): 32 zmm registers of 16 floats or 8 doubles, and
// mask registers for the lane tails. As avx2.h, every function carries its target attribute.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#define CORR2D_AVX512_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define CORR2D_AVX512_INLINE CORR2D_AVX512_TARGET __attribute__((always_inline)) inline

namespace corr2d_ext {
namespace cpu {
namespace avx512_detail {

// As avx2_detail: bfloat16 widens by a shift and narrows to nearest even, NaN kept quiet, bit
// for bit as c10::BFloat16. (AVX512-BF16's vcvtneps2bf16 would be one instruction, but it
// flushes denormals, so it would not round as the portable kernels do, and not every AVX-512
// CPU has it.)
CORR2D_AVX512_INLINE __m512 widen_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
CORR2D_AVX512_INLINE __m256i narrow_bf16(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(r);
}

}  // namespace avx512_detail

struct Avx512F32 {
  using scalar = float;
  using reg = __m512;
  static constexpr int lanes = 16;
  static constexpr int registers = 32;

  static CORR2D_AVX512_INLINE reg zero() { return _mm512_setzero_ps(); }
  static CORR2D_AVX512_INLINE reg set1(float v) { return _mm512_set1_ps(v); }
  static CORR2D_AVX512_INLINE reg load(const float* p) { return _mm512_loadu_ps(p); }
  static CORR2D_AVX512_INLINE void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static CORR2D_AVX512_INLINE reg fma(reg a, reg b, reg acc) { return _mm512_fmadd_ps(a, b, acc); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  static CORR2D_AVX512_INLINE reg even_lanes(reg a, reg b) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, even, b);
  }
  static CORR2D_AVX512_INLINE reg odd_lanes(reg a, reg b) {
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(a, odd, b);
  }
  // The inverse: a0 b0 a1 b1 ... of phases a (even columns) and b (odd ones), its first 16
  // lanes (low) and its next 16 (high).
  static CORR2D_AVX512_INLINE reg interleave_low(reg a, reg b) {
    const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    return _mm512_permutex2var_ps(a, low, b);
  }
  static CORR2D_AVX512_INLINE reg interleave_high(reg a, reg b) {
    const __m512i high =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    return _mm512_permutex2var_ps(a, high, b);
  }
  // The first n lanes from p, zeros in the others; memory past p + n is not read (masked
  // lanes do not fault).
  static CORR2D_AVX512_INLINE reg load_first(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  // v's first n lanes to p; memory past p + n is not written. A masked store, one instruction (where
  // a store through a buffer became a memcpy call, a tenth of a depthwise layer's time on rows
  // of 14 pixels).
  static CORR2D_AVX512_INLINE void store_first(float* p, reg v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  template <typename T>
  static CORR2D_AVX512_INLINE reg load_from(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
      return load(p);
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
      return avx512_detail::widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    } else {
      static_assert(std::is_same_v<T, c10::Half>);
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
  }
  template <typename T>
  static CORR2D_AVX512_INLINE void store_to(T* p, reg v) {
    if constexpr (std::is_same_v<T, float>) {
      store(p, v);
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), avx512_detail::narrow_bf16(v));
    } else {
      static_assert(std::is_same_v<T, c10::Half>);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                          _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
};

struct Avx512F64 {
  using scalar = double;
  using reg = __m512d;
  static constexpr int lanes = 8;
  static constexpr int registers = 32;

  static CORR2D_AVX512_INLINE reg zero() { return _mm512_setzero_pd(); }
  static CORR2D_AVX512_INLINE reg set1(double v) { return _mm512_set1_pd(v); }
  static CORR2D_AVX512_INLINE reg load(const double* p) { return _mm512_loadu_pd(p); }
  static CORR2D_AVX512_INLINE void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static CORR2D_AVX512_INLINE reg fma(reg a, reg b, reg acc) { return _mm512_fmadd_pd(a, b, acc); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  static CORR2D_AVX512_INLINE reg even_lanes(reg a, reg b) {
    return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
  }
  static CORR2D_AVX512_INLINE reg odd_lanes(reg a, reg b) {
    return _mm512_permutex2var_pd(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b);
  }
  static CORR2D_AVX512_INLINE reg interleave_low(reg a, reg b) {
    return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b);
  }
  static CORR2D_AVX512_INLINE reg interleave_high(reg a, reg b) {
    return _mm512_permutex2var_pd(a, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b);
  }
  static CORR2D_AVX512_INLINE reg load_first(const double* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  static CORR2D_AVX512_INLINE void store_first(double* p, reg v, int n) {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), v);
  }
  template <typename T>
  static CORR2D_AVX512_INLINE reg load_from(const T* p) {
    static_assert(std::is_same_v<T, double>);
    return load(p);
  }
  template <typename T>
  static CORR2D_AVX512_INLINE void store_to(T* p, reg v) {
    static_assert(std::is_same_v<T, double>);
    store(p, v);
  }
};

}  // namespace cpu
}  // namespace corr2d_ext
