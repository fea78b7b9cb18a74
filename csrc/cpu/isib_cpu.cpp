// CPU kernels of ddtime::pairwise_symmetric_kl, ddtime::isib_loss and their backwards (ops 5-8).
//
// x: [S, N, L]; per (sample s, channel n) row, P = softmax of x / tau over L.
// D_ij = (h_i + h_j - C_ij - C_ji) / N, h_i = sum P_i logP_i, C = P @ logP^T over the N*L axis,
// computed with logP -> Zhat = x / tau - rowmax and P -> Phat = P - 1/L, which leaves D and its
// gradient unchanged and avoids cancelling the -log(L) in float32 (softmax_rows.h explains why).
//
// Memory, O(S*N*L + S^2): x is read by blocks of nb channels. A block's Zhat and Phat for all S samples
// live in one reused workspace W = [S, 2*Kb] (row s: Zhat | Phat of the block, Kb = nb*L), nb chosen
// so that W stays within kWorkspaceBytes. No S*S*L intermediate, no full copy of softmax(x), and
// nothing is saved between forward and backward but D (isib_loss) or x.
//
// Forward, per block: rows in parallel -> W and h; then C += Phat_blk @ Zhat_blk^T by at::mm/addmm_
// into the output, which is turned into D in place at the end. For S <= kDirectMaxSamples a direct
// loop over pairs accumulates sum (Phat_i - Phat_j)(Zhat_i - Zhat_j) instead (the same value, no GEMM
// call overhead, and exactly 0 for identical samples).
// Backward: Gs' = (G + G^T) / N with zero diagonal, a = row sums of Gs'. Per block, W is recomputed,
// M = Gs' @ W = [Gs' Zhat | Gs' Phat] by GEMM (for S <= kDirectMaxSamples: M = Gs' @ W - a W by a
// direct loop over differences, with a = 0 passed on), and every row's softmax backward writes
// grad_x. isib_loss_backward builds Gs' = -g exp(-D) / (npairs N) by row panels when S^2 is large,
// so it holds no second S x S matrix.
// Rows: float32 on AVX-512 CPUs use the intrinsics of softmax_rows_avx512.h, else softmax_rows.h.
// GEMMs: float32 with kDirectMaxSamples < S <= kSmallGemmMaxSamples on AVX-512 CPUs use the
// register-tiled kernels of small_gemm_avx512.h (~1.6x MKL's sgemm, which runs its AVX2 path on AMD
// CPUs); everything else at::mm / addmm_.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/simd_exp.h"
#include "cpu/small_gemm_avx512.h"
#include "cpu/softmax_rows.h"
#include "cpu/softmax_rows_avx512.h"

namespace ddtime::cpu {
namespace {

constexpr int64_t kWorkspaceBytes = int64_t{4} << 20;  // W = [S, 2*Kb] per channel block
constexpr int64_t kGsCacheBytes = int64_t{16} << 20;   // isib backward: whole Gs' up to this size
constexpr int64_t kPanelBytes = int64_t{4} << 20;      // ... else row panels of this size
constexpr int64_t kMinPanelRows = 64;
constexpr int64_t kTile = 64;  // tiles of the in-place symmetric pass over D
constexpr int64_t kDirectMaxSamples = 16;       // direct pair loops instead of GEMM calls
constexpr int64_t kSmallGemmMaxSamples = 256;   // float32: small_gemm_avx512.h instead of at::mm
// Work (vector-friendly element operations) a parallel task must get, ~50-100 us: on a busy machine
// a parallel region waits for a scheduler slice (milliseconds) whenever a worker is not running, and
// idle workers spin, so small calls stay serial.
constexpr int64_t kTaskWork = int64_t{1} << 20;
// Operations per element of the row kernels (for grain_rows).
constexpr int64_t kSoftmaxOps = 24;  // exp polynomial and three passes
constexpr int64_t kBackwardOps = 8;
constexpr int64_t kExpOps = 16;

// Grain of at::parallel_for over rows that cost row_work each.
int64_t grain_rows(int64_t row_work) { return std::max<int64_t>(1, kTaskWork / std::max<int64_t>(1, row_work)); }

template <typename opmath_t>
bool use_small_gemm(int64_t S) {
  return std::is_same_v<opmath_t, float> && S > kDirectMaxSamples && S <= kSmallGemmMaxSamples && cpu_has_avx512();
}

// D (+)= Phat @ Zhat^T of a block, W = [S, 2*Kb] (small_gemm_avx512.h; only called when use_small_gemm).
void small_gemm_cross(const float* W, int64_t S, int64_t Kb, float* D, bool accumulate) {
#if DDTIME_HAVE_AVX512_GEMM
  at::parallel_for(0, (S + 3) / 4, grain_rows(4 * S * Kb), [&](int64_t b, int64_t e) {
    gemm_nt_avx512(W + Kb, 2 * Kb, W, 2 * Kb, Kb, S, D, S, 4 * b, std::min(S, 4 * e), accumulate);
  });
#endif
}

// M = G @ W for a panel: G [rows, S], W [S, width], M [rows, width] (only called when use_small_gemm).
void small_gemm_panel(const float* G, const float* W, int64_t rows, int64_t S, int64_t width, float* M) {
#if DDTIME_HAVE_AVX512_GEMM
  at::parallel_for(0, (rows + 3) / 4, grain_rows(4 * S * width), [&](int64_t b, int64_t e) {
    gemm_nn_avx512(G, S, W, width, S, width, M, width, 4 * b, std::min(rows, 4 * e));
  });
#endif
}

struct Shape {
  int64_t S, N, L;
  int64_t nb;  // channels per block
};

Shape plan(const at::Tensor& x, int64_t elem_bytes) {
  const int64_t S = x.size(0), N = x.size(1), L = x.size(2);
  const int64_t per_channel = S * 2 * L * elem_bytes;
  return {S, N, L, std::clamp<int64_t>(kWorkspaceBytes / per_channel, 1, N)};
}

// ---- chunk kernels (one parallel task each; compiled for AVX-512 / AVX2 / baseline) ----------------

// Rows r in [begin, end) of a block (r = s * nbb + c): Zhat, Phat into W, the row's h into h[r].
template <typename scalar_t, typename opmath_t>
DDTIME_SIMD_CLONES void softmax_block_rows(const scalar_t* x, int64_t N, int64_t L, int64_t n0, int64_t nbb,
                                           opmath_t inv_tau, opmath_t* W, opmath_t* h, int64_t begin, int64_t end) {
  const int64_t Kb = nbb * L;
#if DDTIME_HAVE_AVX512_GEMM
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx512()) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t s = r / nbb, c = r % nbb;
        float* zhat = W + s * 2 * Kb + c * L;
        h[r] = shifted_softmax_row_avx512(x + (s * N + n0 + c) * L, L, inv_tau, zhat, zhat + Kb);
      }
      return;
    }
  }
#endif
  for (int64_t r = begin; r < end; ++r) {
    const int64_t s = r / nbb, c = r % nbb;
    opmath_t* zhat = W + s * 2 * Kb + c * L;
    h[r] = shifted_softmax_row<scalar_t, opmath_t>(x + (s * N + n0 + c) * L, L, inv_tau, zhat, zhat + Kb);
  }
}

// D[i, j] += sum_k (Phat_ik - Phat_jk)(Zhat_ik - Zhat_jk) for i in [begin, end), j > i.
template <typename opmath_t>
DDTIME_SIMD_CLONES void direct_pair_rows(const opmath_t* W, int64_t S, int64_t Kb, opmath_t* D, int64_t begin,
                                         int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const opmath_t* __restrict li = W + i * 2 * Kb;
    const opmath_t* __restrict pi = li + Kb;
    for (int64_t j = i + 1; j < S; ++j) {
      const opmath_t* __restrict lj = W + j * 2 * Kb;
      const opmath_t* __restrict pj = lj + Kb;
#if DDTIME_HAVE_AVX512_GEMM
      if constexpr (std::is_same_v<opmath_t, float>) {
        if (cpu_has_avx512()) {
          D[i * S + j] += diff_dot_avx512(pi, pj, li, lj, Kb);
          continue;
        }
      }
#endif
      opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < Kb; ++k) acc += (pi[k] - pj[k]) * (li[k] - lj[k]);
      D[i * S + j] += acc;
    }
  }
}

// M[i] = sum_j G[i, j] (W[j] - W[i]) = (G W)[i] - a_i W[i] for rows i in [begin, end); G: [S, S],
// W, M: [S, width]. The difference form is exact for identical samples (M = 0, zero gradient).
template <typename opmath_t>
DDTIME_SIMD_CLONES void direct_diff_rows(const opmath_t* G, const opmath_t* W, int64_t S, int64_t width, opmath_t* M,
                                         int64_t begin, int64_t end) {
#if DDTIME_HAVE_AVX512_GEMM
  if constexpr (std::is_same_v<opmath_t, float>) {
    if (cpu_has_avx512()) {
      diff_gemm_avx512(G, W, S, width, M, begin, end);
      return;
    }
  }
#endif
  for (int64_t i = begin; i < end; ++i) {
    opmath_t* __restrict m = M + i * width;
    const opmath_t* __restrict wi = W + i * width;
    std::fill(m, m + width, opmath_t(0));
    for (int64_t j = 0; j < S; ++j) {
      if (j == i) continue;
      const opmath_t g = G[i * S + j];
      const opmath_t* __restrict wj = W + j * width;
#pragma omp simd
      for (int64_t k = 0; k < width; ++k) m[k] += g * (wj[k] - wi[k]);
    }
  }
}

// Panel rows r = (s - r0) * nbb + c in [begin, end): the softmax backward of row (s, n0 + c).
// M: the panel's rows of Gs' @ W ([rows, 2*Kb]), a: row sums of Gs' (all S).
template <typename scalar_t, typename opmath_t>
DDTIME_SIMD_CLONES void backward_block_rows(const opmath_t* W, const opmath_t* M, const opmath_t* a, int64_t r0,
                                            int64_t N, int64_t L, int64_t n0, int64_t nbb, opmath_t inv_tau,
                                            scalar_t* grad, int64_t begin, int64_t end) {
  const int64_t Kb = nbb * L;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t s = r0 + r / nbb, c = r % nbb;
    const opmath_t* zhat = W + s * 2 * Kb + c * L;
    const opmath_t* m1 = M + (r / nbb) * 2 * Kb + c * L;
#if DDTIME_HAVE_AVX512_GEMM
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (cpu_has_avx512()) {
        shifted_softmax_row_backward_avx512(zhat, zhat + Kb, m1, m1 + Kb, a[s], inv_tau, L,
                                            grad + (s * N + n0 + c) * L);
        continue;
      }
    }
#endif
    shifted_softmax_row_backward<scalar_t, opmath_t>(zhat, zhat + Kb, m1, m1 + Kb, a[s], inv_tau, L,
                                                     grad + (s * N + n0 + c) * L);
  }
}

// Rows i in [begin, end) of Gs' = coef * exp(-D) with zero diagonal into G (row i at G + (i - r0) * S),
// and their sums into a[i].
template <typename opmath_t>
DDTIME_SIMD_CLONES void isib_gs_rows(const opmath_t* D, int64_t S, opmath_t coef, opmath_t* G, opmath_t* a,
                                     int64_t r0, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const opmath_t* __restrict d = D + i * S;
    opmath_t* __restrict g = G + (i - r0) * S;
    opmath_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < i; ++j) {
      g[j] = coef * simd_exp(-d[j]);
      sum += g[j];
    }
    g[i] = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = i + 1; j < S; ++j) {
      g[j] = coef * simd_exp(-d[j]);
      sum += g[j];
    }
    a[i] = sum;
  }
}

// out[i] = sum_{j > i} exp(-D[i, j]) for i in [begin, end).
template <typename opmath_t>
DDTIME_SIMD_CLONES void exp_neg_upper_rows(const opmath_t* D, int64_t S, opmath_t* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const opmath_t* __restrict d = D + i * S;
    opmath_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = i + 1; j < S; ++j) sum += simd_exp(-d[j]);
    out[i] = sum;
  }
}

// Tiles (I, J) and (J, I) of D, I <= J, kTile x kTile: D_ij = D_ji = v_ij for i < j, with
// v = (h_i + h_j - C_ij - C_ji) / N from the GEMM's C, or v = D_ij / N (direct: D holds the upper
// sums). Zero diagonal. The (J, I) tile goes through buf by rows: read column-wise in place, a
// power-of-two S puts all rows of a tile in one cache set. Tile pairs are disjoint: one task each.
template <typename opmath_t>
void symmetric_tile_pair(opmath_t* D, int64_t S, const opmath_t* h, bool direct, opmath_t inv_n, int64_t ti,
                         int64_t tj, opmath_t* buf) {
  const int64_t i0 = ti * kTile, i1 = std::min(S, i0 + kTile), j0 = tj * kTile, j1 = std::min(S, j0 + kTile);
  for (int64_t j = j0; j < j1; ++j) std::copy(D + j * S + i0, D + j * S + i1, buf + (j - j0) * kTile);
  for (int64_t i = i0; i < i1; ++i) {
    if (ti == tj) D[i * S + i] = 0;
    for (int64_t j = std::max(i + 1, j0); j < j1; ++j) {
      opmath_t& lower = buf[(j - j0) * kTile + (i - i0)];
      const opmath_t v = direct ? D[i * S + j] * inv_n : (h[i] + h[j] - D[i * S + j] - lower) * inv_n;
      D[i * S + j] = v;
      lower = v;
    }
  }
  for (int64_t j = j0; j < j1; ++j) {  // on a diagonal tile only the part below the diagonal was computed
    const int64_t end = ti == tj ? std::min(i1, j) : i1;
    if (end > i0) std::copy(buf + (j - j0) * kTile, buf + (j - j0) * kTile + (end - i0), D + j * S + i0);
  }
}

// ---- drivers ---------------------------------------------------------------------------------------

// x: contiguous [S, N, L]; D: [S, S] opmath output (any contents on entry).
template <typename scalar_t>
void symmetric_kl_forward(const at::Tensor& x, double tau, at::Tensor& D) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto [S, N, L, nb] = plan(x, sizeof(opmath_t));
  const bool direct = S <= kDirectMaxSamples;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  at::Tensor ws = at::empty({S * 2 * nb * L}, D.options());
  opmath_t* W = ws.mutable_data_ptr<opmath_t>();
  opmath_t* Dp = D.mutable_data_ptr<opmath_t>();
  const opmath_t inv_tau = static_cast<opmath_t>(1.0 / tau);
  std::vector<opmath_t> h(S, opmath_t(0)), hrow(S * nb);
  if (direct) D.zero_();
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    const int64_t nbb = std::min(nb, N - n0), Kb = nbb * L;
    at::parallel_for(0, S * nbb, grain_rows(kSoftmaxOps * L), [&](int64_t b, int64_t e) {
      softmax_block_rows<scalar_t, opmath_t>(xp, N, L, n0, nbb, inv_tau, W, hrow.data(), b, e);
    });
    if (direct) {
      direct_pair_rows<opmath_t>(W, S, Kb, Dp, 0, S);
      continue;
    }
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < nbb; ++c) h[s] += hrow[s * nbb + c];
    if constexpr (std::is_same_v<opmath_t, float>) {
      if (use_small_gemm<opmath_t>(S)) {
        small_gemm_cross(W, S, Kb, Dp, n0 > 0);
        continue;
      }
    }
    const at::Tensor Wb = ws.narrow(0, 0, S * 2 * Kb).view({S, 2 * Kb});
    const at::Tensor zhat = Wb.narrow(1, 0, Kb), phat = Wb.narrow(1, Kb, Kb);
    if (n0 == 0) {
      at::mm_out(D, phat, zhat.t());
    } else {
      D.addmm_(phat, zhat.t());
    }
  }
  // In place, by pairs of tiles (I <= J): D_ij = D_ji = v_ij for i < j (symmetric_tile_pair). Tile row
  // k goes with tile row tiles - 1 - k, so that every task gets tiles + 1 tile pairs.
  const opmath_t inv_n = opmath_t(1) / opmath_t(N);
  const int64_t tiles = (S + kTile - 1) / kTile;
  at::parallel_for(0, (tiles + 1) / 2, grain_rows(8 * kTile * S), [&](int64_t b, int64_t e) {
    std::vector<opmath_t> buf(kTile * kTile);
    for (int64_t k = b; k < e; ++k) {
      const int64_t mirror = tiles - 1 - k;
      for (int64_t tj = k; tj < tiles; ++tj) symmetric_tile_pair(Dp, S, h.data(), direct, inv_n, k, tj, buf.data());
      if (mirror != k)
        for (int64_t tj = mirror; tj < tiles; ++tj)
          symmetric_tile_pair(Dp, S, h.data(), direct, inv_n, mirror, tj, buf.data());
    }
  });
}

// grad = d/dx of sum_ij G_ij D_ij, given Gs' = (G + G^T) / N with zero diagonal by row panels:
// gs_panel(r0, rows) returns rows [r0, r0 + rows) of Gs' as a [rows, S] tensor and has written their
// row sums into a[r0 : r0 + rows]. x: contiguous [S, N, L]; grad: contiguous like x.
template <typename scalar_t, typename GsPanel>
void symmetric_kl_backward(const at::Tensor& x, double tau, int64_t panel_rows, const GsPanel& gs_panel,
                           const at::Tensor& a, at::Tensor& grad) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto [S, N, L, nb] = plan(x, sizeof(opmath_t));
  const bool direct = S <= kDirectMaxSamples;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
  const auto opts = x.options().dtype(c10::CppTypeToScalarType<opmath_t>::value);
  at::Tensor ws = at::empty({S * 2 * nb * L}, opts);
  at::Tensor ms = at::empty({panel_rows * 2 * nb * L}, opts);
  std::vector<opmath_t> hrow(S * nb);
  opmath_t* W = ws.mutable_data_ptr<opmath_t>();
  opmath_t* M = ms.mutable_data_ptr<opmath_t>();
  const std::vector<opmath_t> zeros(direct ? S : 0, opmath_t(0));
  const opmath_t* ap = direct ? zeros.data() : a.const_data_ptr<opmath_t>();
  const opmath_t inv_tau = static_cast<opmath_t>(1.0 / tau);
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    const int64_t nbb = std::min(nb, N - n0), Kb = nbb * L;
    at::parallel_for(0, S * nbb, grain_rows(kSoftmaxOps * L), [&](int64_t b, int64_t e) {
      softmax_block_rows<scalar_t, opmath_t>(xp, N, L, n0, nbb, inv_tau, W, hrow.data(), b, e);
    });
    const at::Tensor Wb = ws.narrow(0, 0, S * 2 * Kb).view({S, 2 * Kb});
    for (int64_t r0 = 0; r0 < S; r0 += panel_rows) {
      const int64_t rows = std::min(panel_rows, S - r0);
      const at::Tensor G = gs_panel(r0, rows);
      const opmath_t* Gp = G.const_data_ptr<opmath_t>();
      if (direct) {  // panel_rows == S here
        at::parallel_for(0, S, grain_rows(3 * 2 * Kb * S), [&](int64_t b, int64_t e) {
          direct_diff_rows<opmath_t>(Gp, W, S, 2 * Kb, M, b, e);
        });
      } else if (use_small_gemm<opmath_t>(S)) {
        if constexpr (std::is_same_v<opmath_t, float>) small_gemm_panel(Gp, W, rows, S, 2 * Kb, M);
      } else {
        at::Tensor Mv = ms.narrow(0, 0, rows * 2 * Kb).view({rows, 2 * Kb});
        at::mm_out(Mv, G, Wb);
      }
      at::parallel_for(0, rows * nbb, grain_rows(kBackwardOps * L), [&](int64_t b, int64_t e) {
        backward_block_rows<scalar_t, opmath_t>(W, M, ap, r0, N, L, n0, nbb, inv_tau, gp, b, e);
      });
    }
  }
}

// Argument checks (checks.h), then x as a contiguous tensor.
at::Tensor checked_samples(const at::Tensor& x, double tau, const char* op) {
  checks::check_samples(op, x, tau);
  return x.contiguous();
}

at::ScalarType opmath_of(const at::Tensor& x) { return at::toOpMathType(x.scalar_type()); }

// ---- ops -------------------------------------------------------------------------------------------

at::Tensor pairwise_symmetric_kl_cpu(const at::Tensor& x_in, double tau) {
  const at::Tensor x = checked_samples(x_in, tau, "pairwise_symmetric_kl");
  at::Tensor D = at::empty({x.size(0), x.size(0)}, x.options().dtype(opmath_of(x)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pairwise_symmetric_kl",
                                  [&] { symmetric_kl_forward<scalar_t>(x, tau, D); });
  return D;
}

at::Tensor pairwise_symmetric_kl_backward_cpu(const at::Tensor& grad_D, const at::Tensor& x_in, double tau) {
  const at::Tensor x = checked_samples(x_in, tau, "pairwise_symmetric_kl_backward");
  const int64_t S = x.size(0), N = x.size(1);
  checks::check_square("pairwise_symmetric_kl_backward", "grad_D", grad_D, x);
  const at::Tensor g = grad_D.to(opmath_of(x));
  at::Tensor gs = (g + g.t()).div_(static_cast<double>(N));
  gs.fill_diagonal_(0);
  const at::Tensor a = gs.sum(1);
  at::Tensor grad = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pairwise_symmetric_kl_backward", [&] {
    symmetric_kl_backward<scalar_t>(x, tau, S, [&](int64_t r0, int64_t rows) { return gs.narrow(0, r0, rows); }, a,
                                    grad);
  });
  return grad;
}

std::tuple<at::Tensor, at::Tensor> isib_loss_cpu(const at::Tensor& x_in, double tau) {
  const at::Tensor x = checked_samples(x_in, tau, "isib_loss");
  const int64_t S = x.size(0);
  const auto opmath = opmath_of(x);
  at::Tensor D = at::empty({S, S}, x.options().dtype(opmath));
  at::Tensor loss = at::empty({}, x.options().dtype(opmath));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "isib_loss", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    symmetric_kl_forward<scalar_t>(x, tau, D);
    std::vector<opmath_t> rows(S);
    const opmath_t* Dp = D.const_data_ptr<opmath_t>();
    at::parallel_for(0, S, grain_rows(kExpOps * S / 2), [&](int64_t b, int64_t e) {
      exp_neg_upper_rows<opmath_t>(Dp, S, rows.data(), b, e);
    });
    double total = 0;
    for (const opmath_t v : rows) total += static_cast<double>(v);
    const double pairs = 0.5 * static_cast<double>(S) * static_cast<double>(S - 1);
    *loss.mutable_data_ptr<opmath_t>() = static_cast<opmath_t>(S > 1 ? total / pairs : 0.0);
  });
  return {loss, D};
}

at::Tensor isib_loss_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& D_in, const at::Tensor& x_in,
                                  double tau) {
  const at::Tensor x = checked_samples(x_in, tau, "isib_loss_backward");
  const int64_t S = x.size(0), N = x.size(1);
  checks::check_square("isib_loss_backward", "D", D_in, x);
  checks::check_grad_loss("isib_loss_backward", grad_loss, x);
  if (S == 1) return at::zeros(x.sizes(), x.options());
  const auto opmath = opmath_of(x);
  const at::Tensor D = D_in.to(opmath).contiguous();
  const double g = grad_loss.item<double>();
  const double pairs = 0.5 * static_cast<double>(S) * static_cast<double>(S - 1);
  const int64_t elem = at::elementSize(opmath);
  const int64_t panel_rows =
      S * S * elem <= kGsCacheBytes ? S : std::clamp<int64_t>(kPanelBytes / (S * elem), kMinPanelRows, S);
  at::Tensor panel = at::empty({panel_rows, S}, x.options().dtype(opmath));
  at::Tensor a = at::empty({S}, x.options().dtype(opmath));
  at::Tensor grad = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "isib_loss_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const opmath_t coef = static_cast<opmath_t>(-g / (pairs * static_cast<double>(N)));
    const opmath_t* Dp = D.const_data_ptr<opmath_t>();
    opmath_t* Gp = panel.mutable_data_ptr<opmath_t>();
    opmath_t* ap = a.mutable_data_ptr<opmath_t>();
    bool filled = false;  // a single panel (all of Gs') is filled once and reused by every block
    auto gs_panel = [&](int64_t r0, int64_t rows) {
      if (!(filled && rows == S)) {
        at::parallel_for(r0, r0 + rows, grain_rows(kExpOps * S), [&](int64_t b, int64_t e) {
          isib_gs_rows<opmath_t>(Dp, S, coef, Gp, ap, r0, b, e);
        });
        filled = rows == S;
      }
      return panel.narrow(0, 0, rows);
    };
    symmetric_kl_backward<scalar_t>(x, tau, panel_rows, gs_panel, a, grad);
  });
  return grad;
}

}  // namespace
}  // namespace ddtime::cpu

TORCH_LIBRARY_IMPL(ddtime, CPU, m) {
  m.impl("pairwise_symmetric_kl", &ddtime::cpu::pairwise_symmetric_kl_cpu);
  m.impl("pairwise_symmetric_kl_backward", &ddtime::cpu::pairwise_symmetric_kl_backward_cpu);
  m.impl("isib_loss", &ddtime::cpu::isib_loss_cpu);
  m.impl("isib_loss_backward", &ddtime::cpu::isib_loss_backward_cpu);
}
