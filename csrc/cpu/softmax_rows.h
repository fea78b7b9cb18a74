// Row kernels of the pairwise symmetric KL: the shifted softmax of one (sample, channel) row of
// x / tau, and its backward. opmath_t accumulates (float for float16/bfloat16/float32 inputs,
// double for float64); the loops are written to vectorize.
//
// Why shifted: with p = softmax(z), logp = z - lse(z), and rows of P summing to one,
//   sum_l (p_il - p_jl)(logp_il - logp_jl) = sum_l (p_il - p_jl)(z_il - z_jl),
// and the same holds after adding any per-row constant to z or any vector common to all samples
// to p or z. So D (and its gradient) can be computed from zhat = z - max(z) and phat = p - 1/L in
// place of logP and P: no log-sum-exp, and no cancellation of the -log(L) that logP and h carry
// (with logP, float32 loses ~1e-5 absolute in D for near-uniform or near-identical rows).
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/simd_exp.h"

namespace ddtime::cpu {

// z = x / tau (as x * inv_tau); zhat = z - max(z); phat = softmax(z) - 1/L. x: [L] input row;
// zhat, phat: [L] outputs. Returns sum(phat * zhat), the row's share of the (shifted) h_i.
template <typename scalar_t, typename opmath_t>
[[gnu::always_inline]] inline opmath_t shifted_softmax_row(const scalar_t* __restrict x, int64_t L, opmath_t inv_tau,
                                                           opmath_t* __restrict zhat, opmath_t* __restrict phat) {
  opmath_t mx = -std::numeric_limits<opmath_t>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t l = 0; l < L; ++l) {
    const opmath_t z = static_cast<opmath_t>(x[l]) * inv_tau;
    zhat[l] = z;
    mx = z > mx ? z : mx;
  }
  opmath_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t l = 0; l < L; ++l) {
    const opmath_t zm = zhat[l] - mx;
    const opmath_t e = simd_exp(zm);
    zhat[l] = zm;
    phat[l] = e;
    sum += e;
  }
  const opmath_t inv_sum = opmath_t(1) / sum;
  const opmath_t inv_l = opmath_t(1) / static_cast<opmath_t>(L);
  opmath_t h = 0;
#pragma omp simd reduction(+ : h)
  for (int64_t l = 0; l < L; ++l) {
    const opmath_t ph = phat[l] * inv_sum - inv_l;
    phat[l] = ph;
    h += ph * zhat[l];
  }
  return h;
}

// Backward of one row, with p = phat + 1/L = softmax(z), z = x / tau, given the gradients
//   dL/dp = a * zhat - m1,   dL/dz (direct, through zhat) = a * phat - m2
// (m1, m2: the row of Gs' @ Zhat and Gs' @ Phat, a: the row sum of Gs'):
//   dL/dz = p * (dL/dp - <dL/dp, p>) + a * phat - m2,   grad = dL/dz / tau.
// (The max subtracted from z adds nothing: D does not change when a row of z is shifted.)
template <typename scalar_t, typename opmath_t>
[[gnu::always_inline]] inline void shifted_softmax_row_backward(const opmath_t* __restrict zhat,
                                                                const opmath_t* __restrict phat,
                                                                const opmath_t* __restrict m1,
                                                                const opmath_t* __restrict m2, opmath_t a,
                                                                opmath_t inv_tau, int64_t L,
                                                                scalar_t* __restrict grad) {
  const opmath_t inv_l = opmath_t(1) / static_cast<opmath_t>(L);
  opmath_t dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t l = 0; l < L; ++l) dot += (phat[l] + inv_l) * (a * zhat[l] - m1[l]);
#pragma omp simd
  for (int64_t l = 0; l < L; ++l) {
    const opmath_t dz = (phat[l] + inv_l) * (a * zhat[l] - m1[l] - dot) + (a * phat[l] - m2[l]);
    grad[l] = static_cast<scalar_t>(dz * inv_tau);
  }
}

}  // namespace ddtime::cpu
