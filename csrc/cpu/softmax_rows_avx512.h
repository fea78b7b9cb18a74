// AVX-512 float32 versions of the row kernels of softmax_rows.h (same definitions, same edge cases).
//
// At the paper's size (rows of L = 192) a row is 12 vectors, and the compiler's `omp simd`
// reductions end every pass with 16 dependent scalar additions: three of them per forward row cost
// about as much as the row's exps. Here each pass ends in a 4-step lane tree, and the exp scales by
// 2^n with one vscalefps. Called only when the CPU reports AVX-512F (cpu_has_avx512()).
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/small_gemm_avx512.h"

namespace ddtime::cpu {

#if DDTIME_HAVE_AVX512_GEMM

// Full-mask zero-masked forms throughout: GCC 12's unmasked max/min/roundscale/scalef expand to
// _mm512_undefined_ps() and warn under -Wall (as lane_sum's shuffles).
constexpr __mmask16 kAllLanes = 0xFFFF;

// Largest of the 16 lanes.
DDTIME_AVX512 inline float lane_max(__m512 v) {
  v = _mm512_maskz_max_ps(kAllLanes, v, _mm512_maskz_shuffle_f32x4(kAllLanes, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_maskz_max_ps(kAllLanes, v, _mm512_maskz_shuffle_f32x4(kAllLanes, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_maskz_max_ps(kAllLanes, v, _mm512_maskz_permute_ps(kAllLanes, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_maskz_max_ps(kAllLanes, v, _mm512_maskz_permute_ps(kAllLanes, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// simd_exp (simd_exp.h) on 16 lanes: the same reduction and polynomial; 2^n by vscalefps, which
// gives subnormal results and overflow to inf directly. 0 below -104 and for -inf, NaN in -> NaN out.
DDTIME_AVX512 inline __m512 exp16(__m512 x) {
  __m512 n = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  n = _mm512_maskz_max_ps(kAllLanes, n, _mm512_set1_ps(-150.0f));  // NaN -> -150 (max returns its 2nd operand)
  n = _mm512_maskz_min_ps(kAllLanes, n, _mm512_set1_ps(128.0f));
  n = _mm512_maskz_roundscale_ps(kAllLanes, n, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_LT_OQ);
  return _mm512_mask_mov_ps(_mm512_maskz_scalef_ps(kAllLanes, y, n), tiny, _mm512_setzero_ps());
}

inline __mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1); }

// shifted_softmax_row (softmax_rows.h) for float32: zhat = x * inv_tau - max, phat = softmax - 1/L;
// returns sum(phat * zhat).
DDTIME_AVX512 inline float shifted_softmax_row_avx512(const float* x, int64_t L, float inv_tau, float* zhat,
                                                      float* phat) {
  const int64_t full = L & ~int64_t{15};
  const __mmask16 tail = tail_mask(L - full);
  const __m512 vtau = _mm512_set1_ps(inv_tau);
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t l = 0; l < full; l += 16) {
    const __m512 z = _mm512_mul_ps(_mm512_loadu_ps(x + l), vtau);
    _mm512_storeu_ps(zhat + l, z);
    vmax = _mm512_maskz_max_ps(kAllLanes, z, vmax);  // a NaN z is skipped, as in the scalar max
  }
  if (tail) {
    const __m512 z = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + full), vtau);
    _mm512_mask_storeu_ps(zhat + full, tail, z);
    vmax = _mm512_mask_max_ps(vmax, tail, z, vmax);
  }
  const __m512 mx = _mm512_set1_ps(lane_max(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t l = 0; l < full; l += 16) {
    const __m512 zm = _mm512_sub_ps(_mm512_loadu_ps(zhat + l), mx);
    const __m512 e = exp16(zm);
    _mm512_storeu_ps(zhat + l, zm);
    _mm512_storeu_ps(phat + l, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 zm = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, zhat + full), mx);
    const __m512 e = exp16(zm);
    _mm512_mask_storeu_ps(zhat + full, tail, zm);
    _mm512_mask_storeu_ps(phat + full, tail, e);
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
  }
  const __m512 inv_sum = _mm512_set1_ps(1.0f / lane_sum(sum));
  const __m512 inv_l = _mm512_set1_ps(1.0f / static_cast<float>(L));
  __m512 h = _mm512_setzero_ps();
  for (int64_t l = 0; l < full; l += 16) {
    const __m512 ph = _mm512_fmsub_ps(_mm512_loadu_ps(phat + l), inv_sum, inv_l);
    _mm512_storeu_ps(phat + l, ph);
    h = _mm512_fmadd_ps(ph, _mm512_loadu_ps(zhat + l), h);
  }
  if (tail) {
    const __m512 ph = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, phat + full), inv_sum, inv_l);
    _mm512_mask_storeu_ps(phat + full, tail, ph);
    h = _mm512_mask3_fmadd_ps(ph, _mm512_maskz_loadu_ps(tail, zhat + full), h, tail);
  }
  return lane_sum(h);
}

// 16 (masked) elements of the backward below, from offset l.
DDTIME_AVX512 inline void row_backward16(const float* zhat, const float* phat, const float* m1, const float* m2,
                                         __m512 va, __m512 inv_l, __m512 dot, __m512 vtau, float* grad, int64_t l,
                                         __mmask16 mask) {
  const __m512 ph = _mm512_maskz_loadu_ps(mask, phat + l);
  const __m512 d =
      _mm512_sub_ps(_mm512_fmsub_ps(va, _mm512_maskz_loadu_ps(mask, zhat + l), _mm512_maskz_loadu_ps(mask, m1 + l)), dot);
  const __m512 direct = _mm512_fmsub_ps(va, ph, _mm512_maskz_loadu_ps(mask, m2 + l));
  _mm512_mask_storeu_ps(grad + l, mask, _mm512_mul_ps(_mm512_fmadd_ps(_mm512_add_ps(ph, inv_l), d, direct), vtau));
}

// shifted_softmax_row_backward (softmax_rows.h) for float32 in and out:
//   grad = ((phat + 1/L) (a zhat - m1 - dot) + a phat - m2) * inv_tau, dot = <phat + 1/L, a zhat - m1>.
DDTIME_AVX512 inline void shifted_softmax_row_backward_avx512(const float* zhat, const float* phat, const float* m1,
                                                             const float* m2, float a, float inv_tau, int64_t L,
                                                             float* grad) {
  const int64_t full = L & ~int64_t{15};
  const __mmask16 tail = tail_mask(L - full);
  const __m512 va = _mm512_set1_ps(a), inv_l = _mm512_set1_ps(1.0f / static_cast<float>(L));
  __m512 acc = _mm512_setzero_ps();
  for (int64_t l = 0; l < full; l += 16) {
    const __m512 p = _mm512_add_ps(_mm512_loadu_ps(phat + l), inv_l);
    acc = _mm512_fmadd_ps(p, _mm512_fmsub_ps(va, _mm512_loadu_ps(zhat + l), _mm512_loadu_ps(m1 + l)), acc);
  }
  if (tail) {
    const __m512 p = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, phat + full), inv_l);
    const __m512 d = _mm512_fmsub_ps(va, _mm512_maskz_loadu_ps(tail, zhat + full), _mm512_maskz_loadu_ps(tail, m1 + full));
    acc = _mm512_mask3_fmadd_ps(p, d, acc, tail);
  }
  const __m512 dot = _mm512_set1_ps(lane_sum(acc)), vtau = _mm512_set1_ps(inv_tau);
  for (int64_t l = 0; l < full; l += 16) row_backward16(zhat, phat, m1, m2, va, inv_l, dot, vtau, grad, l, 0xFFFF);
  if (tail) row_backward16(zhat, phat, m1, m2, va, inv_l, dot, vtau, grad, full, tail);
}

#endif  // DDTIME_HAVE_AVX512_GEMM

}  // namespace ddtime::cpu
