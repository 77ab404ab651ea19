// Vector traits for AVX2 + FMA (+ F16C, which every AVX2 CPU has): 16 ymm registers of 8 floats
// or 4 doubles. Every function carries the target attribute, so this header may be included in
// a translation unit built for plain x86-64: only the kernels instantiated with these traits
// (themselves marked CORR2D_TARGET) run AVX2 instructions, and only after dispatch has checked
// the CPU.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#define CORR2D_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define CORR2D_AVX2_INLINE CORR2D_AVX2_TARGET __attribute__((always_inline)) inline

namespace corr2d_ext {
namespace cpu {
namespace avx2_detail {

alignas(32) inline constexpr int32_t kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                      0,  0,  0,  0,  0,  0,  0,  0};

// The first `valid` of 8 32-bit lanes set.
CORR2D_AVX2_INLINE __m256i first_lanes32(int valid) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - valid));
}

// bfloat16 is the top half of a float: widening is a shift. Narrowing rounds to nearest even
// and keeps NaN a (quiet) NaN, bit for bit as c10::BFloat16's constructor does.
CORR2D_AVX2_INLINE __m256 widen_bf16(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
CORR2D_AVX2_INLINE __m128i narrow_bf16(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
  // Every lane is now below 2^16, so the unsigned saturating pack is exact.
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

}  // namespace avx2_detail

struct Avx2F32 {
  using scalar = float;
  using reg = __m256;
  static constexpr int lanes = 8;
  static constexpr int registers = 16;

  static CORR2D_AVX2_INLINE reg zero() { return _mm256_setzero_ps(); }
  static CORR2D_AVX2_INLINE reg set1(float v) { return _mm256_set1_ps(v); }
  static CORR2D_AVX2_INLINE reg load(const float* p) { return _mm256_loadu_ps(p); }
  static CORR2D_AVX2_INLINE void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static CORR2D_AVX2_INLINE reg fma(reg a, reg b, reg acc) { return _mm256_fmadd_ps(a, b, acc); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  // (In-lane shuffles pick a0 a2 b0 b2 | a4 a6 b4 b6; the 64-bit permute puts the pairs in order.)
  static CORR2D_AVX2_INLINE reg even_lanes(reg a, reg b) {
    const __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static CORR2D_AVX2_INLINE reg odd_lanes(reg a, reg b) {
    const __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // The inverse: a0 b0 a1 b1 ... of phases a (even columns) and b (odd ones), its first 8
  // lanes (low) and its next 8 (high). unpack works within 128-bit halves: a0 b0 a1 b1 | a4 b4
  // a5 b5 and a2 b2 a3 b3 | a6 b6 a7 b7, whose halves are then paired.
  static CORR2D_AVX2_INLINE reg interleave_low(reg a, reg b) {
    return _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x20);
  }
  static CORR2D_AVX2_INLINE reg interleave_high(reg a, reg b) {
    return _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x31);
  }
  // The first n lanes from p, zeros in the others; memory past p + n is not read (vmaskmov
  // suppresses faults on the masked lanes).
  static CORR2D_AVX2_INLINE reg load_first(const float* p, int n) {
    return _mm256_maskload_ps(p, avx2_detail::first_lanes32(n));
  }
  // v's first n lanes to p; memory past p + n is not written. Through a buffer: vmaskmov's store is
  // microcoded and slow on AMD cores.
  static CORR2D_AVX2_INLINE void store_first(float* p, reg v, int n) {
    alignas(32) float tmp[lanes];
    store(tmp, v);
    for (int k = 0; k < n; ++k) p[k] = tmp[k];
  }
  template <typename T>
  static CORR2D_AVX2_INLINE reg load_from(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
      return load(p);
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
      return avx2_detail::widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else {
      static_assert(std::is_same_v<T, c10::Half>);
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
  }
  template <typename T>
  static CORR2D_AVX2_INLINE void store_to(T* p, reg v) {
    if constexpr (std::is_same_v<T, float>) {
      store(p, v);
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), avx2_detail::narrow_bf16(v));
    } else {
      static_assert(std::is_same_v<T, c10::Half>);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                       _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
};

struct Avx2F64 {
  using scalar = double;
  using reg = __m256d;
  static constexpr int lanes = 4;
  static constexpr int registers = 16;

  static CORR2D_AVX2_INLINE reg zero() { return _mm256_setzero_pd(); }
  static CORR2D_AVX2_INLINE reg set1(double v) { return _mm256_set1_pd(v); }
  static CORR2D_AVX2_INLINE reg load(const double* p) { return _mm256_loadu_pd(p); }
  static CORR2D_AVX2_INLINE void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static CORR2D_AVX2_INLINE reg fma(reg a, reg b, reg acc) { return _mm256_fmadd_pd(a, b, acc); }
  // Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 x lanes elements a then b: the two
  // column phases of a stride-2 row.
  // (unpack picks a0 b0 | a2 b2; the permute puts them in order.)
  static CORR2D_AVX2_INLINE reg even_lanes(reg a, reg b) {
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  static CORR2D_AVX2_INLINE reg odd_lanes(reg a, reg b) {
    return _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  static CORR2D_AVX2_INLINE reg interleave_low(reg a, reg b) {
    return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x20);
  }
  static CORR2D_AVX2_INLINE reg interleave_high(reg a, reg b) {
    return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x31);
  }
  static CORR2D_AVX2_INLINE reg load_first(const double* p, int n) {
    // Two 32-bit mask lanes per double lane: the mask's sign bits are those of the high halves.
    return _mm256_maskload_pd(p, avx2_detail::first_lanes32(2 * n));
  }
  static CORR2D_AVX2_INLINE void store_first(double* p, reg v, int n) {
    alignas(32) double tmp[lanes];
    store(tmp, v);
    for (int k = 0; k < n; ++k) p[k] = tmp[k];
  }
  template <typename T>
  static CORR2D_AVX2_INLINE reg load_from(const T* p) {
    static_assert(std::is_same_v<T, double>);
    return load(p);
  }
  template <typename T>
  static CORR2D_AVX2_INLINE void store_to(T* p, reg v) {
    static_assert(std::is_same_v<T, double>);
    store(p, v);
  }
};

}  // namespace cpu
}  // namespace corr2d_ext
