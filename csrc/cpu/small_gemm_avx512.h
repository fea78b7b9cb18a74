// Register-tiled float32 GEMMs in AVX-512 intrinsics for the ISIB kernels' small-S regime.
//
// At S <= a few hundred, the cross terms are GEMMs of [S, K] x [K, S] and [S, S] x [S, 2K] shapes
// where at::mm pays call overhead and, on AMD CPUs, runs MKL's AVX2 path: ~95 GFLOP/s per core on
// the development machine (AMD EPYC, Zen 5), where these tiles reach ~150 (bench/results/isib_cpu.md).
// Compiled with a target attribute, called only when the CPU reports AVX-512F (cpu_has_avx512());
// elsewhere the callers use at::mm.
#pragma once

#include <cstdint>

#if defined(__GNUC__) && defined(__x86_64__)
#define DDTIME_HAVE_AVX512_GEMM 1
#include <immintrin.h>
#define DDTIME_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#else
#define DDTIME_HAVE_AVX512_GEMM 0
#endif

namespace ddtime::cpu {

inline bool cpu_has_avx512() {
#if DDTIME_HAVE_AVX512_GEMM
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

#if DDTIME_HAVE_AVX512_GEMM

// Sum of the 16 lanes. Zero-masked shuffles with a full mask: GCC 12's unmasked forms (and
// _mm512_reduce_add_ps) expand to _mm512_undefined_ps() and warn under -Wall.
DDTIME_AVX512 inline float lane_sum(__m512 v) {
  constexpr __mmask16 kAll = 0xFFFF;
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(kAll, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(kAll, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// C[a, b] (+)= sum_k A[a, k] B[b, k] for a < RA, b < RB: RA*RB accumulators over k in steps of 16,
// reduced at the end. Rows of A and B at stride lda / ldb, C row-major with stride ldc.
template <int RA, int RB>
DDTIME_AVX512 inline void nt_tile(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K, float* C,
                                  int64_t ldc, bool accumulate) {
  __m512 c[RA][RB];
  for (int a = 0; a < RA; ++a)
    for (int b = 0; b < RB; ++b) c[a][b] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 x[RA], y[RB];
    for (int a = 0; a < RA; ++a) x[a] = _mm512_loadu_ps(A + a * lda + k);
    for (int b = 0; b < RB; ++b) y[b] = _mm512_loadu_ps(B + b * ldb + k);
    for (int a = 0; a < RA; ++a)
      for (int b = 0; b < RB; ++b) c[a][b] = _mm512_fmadd_ps(x[a], y[b], c[a][b]);
  }
  if (k < K) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 x[RA], y[RB];
    for (int a = 0; a < RA; ++a) x[a] = _mm512_maskz_loadu_ps(mask, A + a * lda + k);
    for (int b = 0; b < RB; ++b) y[b] = _mm512_maskz_loadu_ps(mask, B + b * ldb + k);
    for (int a = 0; a < RA; ++a)
      for (int b = 0; b < RB; ++b) c[a][b] = _mm512_fmadd_ps(x[a], y[b], c[a][b]);
  }
  for (int a = 0; a < RA; ++a)
    for (int b = 0; b < RB; ++b) {
      const float v = lane_sum(c[a][b]);
      C[a * ldc + b] = accumulate ? C[a * ldc + b] + v : v;
    }
}

template <int RA>
DDTIME_AVX512 inline void nt_row_block(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                                       int64_t cols, float* C, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + 4 <= cols; j += 4) nt_tile<RA, 4>(A, lda, B + j * ldb, ldb, K, C + j, ldc, accumulate);
  switch (cols - j) {
    case 3: nt_tile<RA, 3>(A, lda, B + j * ldb, ldb, K, C + j, ldc, accumulate); break;
    case 2: nt_tile<RA, 2>(A, lda, B + j * ldb, ldb, K, C + j, ldc, accumulate); break;
    case 1: nt_tile<RA, 1>(A, lda, B + j * ldb, ldb, K, C + j, ldc, accumulate); break;
    default: break;
  }
}

// C[i, j] (+)= sum_k A[i, k] B[j, k] for rows i in [i0, i1) and columns j < cols.
DDTIME_AVX512 inline void gemm_nt_avx512(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                                         int64_t cols, float* C, int64_t ldc, int64_t i0, int64_t i1,
                                         bool accumulate) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) nt_row_block<4>(A + i * lda, lda, B, ldb, K, cols, C + i * ldc, ldc, accumulate);
  switch (i1 - i) {
    case 3: nt_row_block<3>(A + i * lda, lda, B, ldb, K, cols, C + i * ldc, ldc, accumulate); break;
    case 2: nt_row_block<2>(A + i * lda, lda, B, ldb, K, cols, C + i * ldc, ldc, accumulate); break;
    case 1: nt_row_block<1>(A + i * lda, lda, B, ldb, K, cols, C + i * ldc, ldc, accumulate); break;
    default: break;
  }
}

// M[a, 0:16*NV] = sum_j G[a, j] W[j, 0:16*NV] for a < RA (the last vector masked by `last`).
template <int RA, int NV>
DDTIME_AVX512 inline void nn_tile(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner, float* M,
                                  int64_t ldm, __mmask16 last) {
  __m512 c[RA][NV];
  for (int a = 0; a < RA; ++a)
    for (int v = 0; v < NV; ++v) c[a][v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < inner; ++j) {
    const float* w = W + j * ldw;
    __m512 y[NV];
    for (int v = 0; v + 1 < NV; ++v) y[v] = _mm512_loadu_ps(w + 16 * v);
    y[NV - 1] = _mm512_maskz_loadu_ps(last, w + 16 * (NV - 1));
    for (int a = 0; a < RA; ++a) {
      const __m512 g = _mm512_set1_ps(G[a * ldg + j]);
      for (int v = 0; v < NV; ++v) c[a][v] = _mm512_fmadd_ps(g, y[v], c[a][v]);
    }
  }
  for (int a = 0; a < RA; ++a) {
    for (int v = 0; v + 1 < NV; ++v) _mm512_storeu_ps(M + a * ldm + 16 * v, c[a][v]);
    _mm512_mask_storeu_ps(M + a * ldm + 16 * (NV - 1), last, c[a][NV - 1]);
  }
}

template <int RA>
DDTIME_AVX512 inline void nn_row_block(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner,
                                       int64_t width, float* M, int64_t ldm) {
  constexpr __mmask16 kAll = 0xFFFF;
  int64_t k = 0;
  for (; k + 64 <= width; k += 64) nn_tile<RA, 4>(G, ldg, W + k, ldw, inner, M + k, ldm, kAll);
  for (; k < width; k += 16) {
    const int64_t n = width - k < 16 ? width - k : 16;
    nn_tile<RA, 1>(G, ldg, W + k, ldw, inner, M + k, ldm, static_cast<__mmask16>((1u << n) - 1));
  }
}

// M[i, :width] = sum_{j < inner} G[i, j] W[j, :width] for rows i in [i0, i1).
DDTIME_AVX512 inline void gemm_nn_avx512(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner,
                                         int64_t width, float* M, int64_t ldm, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) nn_row_block<4>(G + i * ldg, ldg, W, ldw, inner, width, M + i * ldm, ldm);
  switch (i1 - i) {
    case 3: nn_row_block<3>(G + i * ldg, ldg, W, ldw, inner, width, M + i * ldm, ldm); break;
    case 2: nn_row_block<2>(G + i * ldg, ldg, W, ldw, inner, width, M + i * ldm, ldm); break;
    case 1: nn_row_block<1>(G + i * ldg, ldg, W, ldw, inner, width, M + i * ldm, ldm); break;
    default: break;
  }
}

#endif  // DDTIME_HAVE_AVX512_GEMM

}  // namespace ddtime::cpu
