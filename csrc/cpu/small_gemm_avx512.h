// Register-tiled float32 products in AVX-512 intrinsics for the ISIB kernels' small-S regime: GEMMs
// for kDirectMaxSamples < S <= kSmallGemmMaxSamples, and the difference-form loops of the direct path.
//
// At S <= a few hundred, the cross terms are GEMMs of [S, K] x [K, S] and [S, S] x [S, 2K] shapes
// where at::mm pays call overhead and, on AMD CPUs, runs MKL's AVX2 path: ~95 GFLOP/s per core on
// the development machine (AMD EPYC with AVX-512), where these tiles reach ~150 (measured when this
// file was written; the op-level times at S = 100 are in bench/results/isib_cpu_1thread.md).
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

// M[a, 0:64] = sum_j G[a, j] W[j, 0:64] for a < RA: RA x 4 accumulators, one broadcast of G per row.
template <int RA>
DDTIME_AVX512 inline void nn_tile64(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner,
                                    float* M, int64_t ldm) {
  __m512 c[RA][4];
  for (int a = 0; a < RA; ++a)
    for (int v = 0; v < 4; ++v) c[a][v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < inner; ++j) {
    const float* w = W + j * ldw;
    __m512 y[4];
    for (int v = 0; v < 4; ++v) y[v] = _mm512_loadu_ps(w + 16 * v);
    for (int a = 0; a < RA; ++a) {
      const __m512 g = _mm512_set1_ps(G[a * ldg + j]);
      for (int v = 0; v < 4; ++v) c[a][v] = _mm512_fmadd_ps(g, y[v], c[a][v]);
    }
  }
  for (int a = 0; a < RA; ++a)
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(M + a * ldm + 16 * v, c[a][v]);
}

// The same for the columns selected by `mask` among 16. (Kept apart from nn_tile64: with a masked
// vector in the same tile GCC 12 stores every accumulator to the stack on each iteration.)
template <int RA>
DDTIME_AVX512 inline void nn_tile16(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner,
                                    float* M, int64_t ldm, __mmask16 mask) {
  __m512 c[RA];
  for (int a = 0; a < RA; ++a) c[a] = _mm512_setzero_ps();
  for (int64_t j = 0; j < inner; ++j) {
    const __m512 y = _mm512_maskz_loadu_ps(mask, W + j * ldw);
    for (int a = 0; a < RA; ++a) c[a] = _mm512_fmadd_ps(_mm512_set1_ps(G[a * ldg + j]), y, c[a]);
  }
  for (int a = 0; a < RA; ++a) _mm512_mask_storeu_ps(M + a * ldm, mask, c[a]);
}

template <int RA>
DDTIME_AVX512 inline void nn_rows(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner, int64_t k,
                                  int64_t n, float* M, int64_t ldm) {
  if (n == 64) {
    nn_tile64<RA>(G, ldg, W + k, ldw, inner, M + k, ldm);
  } else {
    for (int64_t c = 0; c < n; c += 16) {
      const int64_t m = n - c < 16 ? n - c : 16;
      nn_tile16<RA>(G, ldg, W + k + c, ldw, inner, M + k + c, ldm, static_cast<__mmask16>((1u << m) - 1));
    }
  }
}

// M[i, :width] = sum_{j < inner} G[i, j] W[j, :width] for rows i in [i0, i1). Column chunks outside,
// rows inside: a chunk of W (inner x 64 floats) stays in L1 while every row block uses it.
DDTIME_AVX512 inline void gemm_nn_avx512(const float* G, int64_t ldg, const float* W, int64_t ldw, int64_t inner,
                                         int64_t width, float* M, int64_t ldm, int64_t i0, int64_t i1) {
  for (int64_t k = 0; k < width; k += 64) {
    const int64_t n = width - k < 64 ? width - k : 64;
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) nn_rows<4>(G + i * ldg, ldg, W, ldw, inner, k, n, M + i * ldm, ldm);
    switch (i1 - i) {
      case 3: nn_rows<3>(G + i * ldg, ldg, W, ldw, inner, k, n, M + i * ldm, ldm); break;
      case 2: nn_rows<2>(G + i * ldg, ldg, W, ldw, inner, k, n, M + i * ldm, ldm); break;
      case 1: nn_rows<1>(G + i * ldg, ldg, W, ldw, inner, k, n, M + i * ldm, ldm); break;
      default: break;
    }
  }
}

// sum_k (pa_k - pb_k)(za_k - zb_k): four accumulators, so the FMA latency is hidden.
DDTIME_AVX512 inline float diff_dot_avx512(const float* pa, const float* pb, const float* za, const float* zb,
                                           int64_t K) {
  __m512 acc[4];
  for (int v = 0; v < 4; ++v) acc[v] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64)
    for (int v = 0; v < 4; ++v) {
      const int64_t o = k + 16 * v;
      const __m512 dp = _mm512_sub_ps(_mm512_loadu_ps(pa + o), _mm512_loadu_ps(pb + o));
      const __m512 dz = _mm512_sub_ps(_mm512_loadu_ps(za + o), _mm512_loadu_ps(zb + o));
      acc[v] = _mm512_fmadd_ps(dp, dz, acc[v]);
    }
  for (; k < K; k += 16) {
    const __mmask16 mask = K - k < 16 ? static_cast<__mmask16>((1u << (K - k)) - 1) : static_cast<__mmask16>(0xFFFF);
    const __m512 dp = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, pa + k), _mm512_maskz_loadu_ps(mask, pb + k));
    const __m512 dz = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, za + k), _mm512_maskz_loadu_ps(mask, zb + k));
    acc[0] = _mm512_fmadd_ps(dp, dz, acc[0]);
  }
  return lane_sum(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

// m[0:64] = sum_{j != i} g[j] (W[j, 0:64] - W[i, 0:64]), W rows at stride ldw.
DDTIME_AVX512 inline void diff_axpy64(const float* g, const float* W, int64_t ldw, int64_t S, int64_t i, float* m) {
  __m512 wi[4], acc[4];
  for (int v = 0; v < 4; ++v) {
    wi[v] = _mm512_loadu_ps(W + i * ldw + 16 * v);
    acc[v] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < S; ++j) {
    if (j == i) continue;
    const __m512 gj = _mm512_set1_ps(g[j]);
    for (int v = 0; v < 4; ++v)
      acc[v] = _mm512_fmadd_ps(gj, _mm512_sub_ps(_mm512_loadu_ps(W + j * ldw + 16 * v), wi[v]), acc[v]);
  }
  for (int v = 0; v < 4; ++v) _mm512_storeu_ps(m + 16 * v, acc[v]);
}

// The same for the columns selected by `mask` among 16 (apart from diff_axpy64, see nn_tile16).
DDTIME_AVX512 inline void diff_axpy16(const float* g, const float* W, int64_t ldw, int64_t S, int64_t i, float* m,
                                      __mmask16 mask) {
  const __m512 wi = _mm512_maskz_loadu_ps(mask, W + i * ldw);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < S; ++j) {
    if (j == i) continue;
    acc = _mm512_fmadd_ps(_mm512_set1_ps(g[j]), _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, W + j * ldw), wi), acc);
  }
  _mm512_mask_storeu_ps(m, mask, acc);
}

// M[i, :width] = sum_{j != i} G[i, j] (W[j] - W[i]) for rows i in [i0, i1); G row-major [S, S], W and
// M rows at stride width. Column chunks outside, rows inside (W's chunk stays in L1).
DDTIME_AVX512 inline void diff_gemm_avx512(const float* G, const float* W, int64_t S, int64_t width, float* M,
                                           int64_t i0, int64_t i1) {
  int64_t k = 0;
  for (; k + 64 <= width; k += 64)
    for (int64_t i = i0; i < i1; ++i) diff_axpy64(G + i * S, W + k, width, S, i, M + i * width + k);
  for (; k < width; k += 16) {
    const int64_t n = width - k < 16 ? width - k : 16;
    for (int64_t i = i0; i < i1; ++i)
      diff_axpy16(G + i * S, W + k, width, S, i, M + i * width + k, static_cast<__mmask16>((1u << n) - 1));
  }
}

#endif  // DDTIME_HAVE_AVX512_GEMM

}  // namespace ddtime::cpu
