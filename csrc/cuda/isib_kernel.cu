// Pairwise symmetric KL / ISIB kernels. See isib_kernel.cuh for the algorithm and its guarantees.
//
// Forward:  row_stats -> pair_tiles (upper triangle of 64x64 sample tiles x fixed K splits)
//           -> finalize (fixed-order sum of the splits, D and its mirror via 32x32 shared-memory
//           transposes, per-tile exp(-D) sums) -> isib_total (one block, fixed order).
// Backward: row_stats -> prepare (Gs = G + G^T with zero diagonal, a_i = sum_j Gs_ij / N)
//           -> gemm_tiles (Gs @ logP and Gs @ P per 64x64 tile of [S, N*L], epilogue
//           q = p (a l - (Gs l)/N) + (a p - (Gs p)/N)) -> row_backward (dz = q - p sum(q), / tau).
// Block programs are written against the execution context of kernel_common.cuh.
#include "isib_kernel.cuh"

#include <algorithm>

#include "kernel_common.cuh"

namespace ddtime::kernels {
namespace {

using detail::ceil_div;
using detail::DeviceCtx;
using detail::DeviceLimits;
using detail::exp_op;
using detail::from_op;
using detail::imin;
using detail::kWarp;
using detail::log_op;
using detail::to_op;

constexpr int kThreads = 256;    // every kernel; the tile kernels map them as 16 x 16
constexpr int kTile = 64;        // samples / columns per tile side
constexpr int kMicro = 4;        // kTile / 16 rows and columns per thread
constexpr int kPad = kTile + 1;  // shared-memory row stride (conflict-free transposed stores)
constexpr int kSquare = 32;      // finalize tile side
constexpr int kMaxSplits = 128;

template <typename R>
__host__ __device__ constexpr int depth() {  // reduction depth of one shared-memory stage (128-byte row segments)
  return sizeof(R) == 4 ? 32 : 16;
}

template <typename T>
struct IsibParams {
  using R = opmath_t<T>;
  const T* x;  // contiguous [S, N, L]
  int64_t S, N, L, K;
  R inv_tau, inv_n, inv_pairs;
  R* lse;  // [S * N]
  // forward
  R* partial;  // [splits, S, S], entries (i, j) of the tiles bi <= bj
  int64_t tiles, splits, chunks_per_split;
  R* D;          // [S, S]
  R* tile_loss;  // [ceil(S / 32)^2] (nullptr: no ISIB loss)
  R* loss;
  // backward
  const R* grad_D;     // pairwise_kl: [S, S]
  const R* grad_loss;  // isib: one value
  const R* D_in;       // isib: [S, S]
  R* Gs;               // [S, S]
  R* a;                // [S]
  R* q;                // [S, K]
  T* grad_x;
};

// p and log p of x[row, k] (row-major [S, K]); zero outside the valid range.
template <typename T>
DDT_HD void softmax_entry(const IsibParams<T>& p, int64_t row, int64_t k, bool valid, opmath_t<T>& prob,
                          opmath_t<T>& logp) {
  using R = opmath_t<T>;
  if (!valid) {
    prob = logp = R(0);
    return;
  }
  const int64_t channel = static_cast<uint32_t>(k) / static_cast<uint32_t>(p.L);  // K < 2^31 (valid_shape)
  logp = to_op(p.x[row * p.K + k]) * p.inv_tau - p.lse[row * p.N + channel];
  prob = exp_op(logp);
}

// ---- row statistics: lse[s, n] = log sum_l exp(x[s, n, l] / tau), one warp per row ---------------
template <typename T, class Ctx>
DDT_HD void row_stats_block(const Ctx& ctx, const IsibParams<T>& p) {
  using R = opmath_t<T>;
  const int64_t rows = p.S * p.N;
  for (int64_t row = ctx.block() * ctx.warps() + ctx.warp(); row < rows; row += ctx.blocks() * ctx.warps()) {
    const T* xr = p.x + row * p.L;
    R m = -static_cast<R>(INFINITY);
    for (int64_t l = ctx.lane(); l < p.L; l += kWarp) m = fmax(m, to_op(xr[l]) * p.inv_tau);
    m = ctx.warp_max(m);
    R s = R(0);
    for (int64_t l = ctx.lane(); l < p.L; l += kWarp) s += exp_op(to_op(xr[l]) * p.inv_tau - m);
    s = ctx.warp_sum(s);
    if (ctx.lane() == 0) p.lse[row] = m + log_op(s);
  }
}

// ---- forward tiles: partial[split, i, j] = sum_{k in split} (p_ik - p_jk)(l_ik - l_jk) ----------
template <typename T, class Ctx>
DDT_HD void pair_tiles_block(const Ctx& ctx, const IsibParams<T>& p, unsigned char* smem) {
  using R = opmath_t<T>;
  constexpr int BK = depth<R>();
  R* sPi = reinterpret_cast<R*>(smem);
  R* sLi = sPi + BK * kPad;
  R* sPj = sLi + BK * kPad;
  R* sLj = sPj + BK * kPad;
  const int tx = ctx.thread() % 16, ty = ctx.thread() / 16;
  const int64_t pairs = p.tiles * p.tiles;
  for (int64_t b = ctx.block(); b < pairs * p.splits; b += ctx.blocks()) {
    const int64_t split = b / pairs, rest = b - split * pairs, bi = rest / p.tiles, bj = rest - bi * p.tiles;
    if (bi > bj) continue;  // the lower triangle mirrors the upper one
    const int64_t i0 = bi * kTile, j0 = bj * kTile;
    const int64_t k_begin = split * p.chunks_per_split * BK;
    const int64_t k_end = imin(p.K, k_begin + p.chunks_per_split * BK);
    R acc[kMicro][kMicro] = {};
    for (int64_t kc = k_begin; kc < k_end; kc += BK) {
      ctx.for_each(kTile * BK, [&](int e) {
        const int row = e / BK, kk = e - row * BK;
        const int64_t k = kc + kk;
        const bool in_k = k < k_end;
        softmax_entry(p, i0 + row, k, in_k && i0 + row < p.S, sPi[kk * kPad + row], sLi[kk * kPad + row]);
        softmax_entry(p, j0 + row, k, in_k && j0 + row < p.S, sPj[kk * kPad + row], sLj[kk * kPad + row]);
      });
      ctx.sync();
#pragma unroll 4
      for (int kk = 0; kk < BK; ++kk) {
        R pi[kMicro], li[kMicro], pj[kMicro], lj[kMicro];
#pragma unroll
        for (int u = 0; u < kMicro; ++u) {
          pi[u] = sPi[kk * kPad + ty + 16 * u];
          li[u] = sLi[kk * kPad + ty + 16 * u];
          pj[u] = sPj[kk * kPad + tx + 16 * u];
          lj[u] = sLj[kk * kPad + tx + 16 * u];
        }
#pragma unroll
        for (int u = 0; u < kMicro; ++u)
#pragma unroll
          for (int v = 0; v < kMicro; ++v) acc[u][v] += (pi[u] - pj[v]) * (li[u] - lj[v]);
      }
      ctx.sync();
    }
#pragma unroll
    for (int u = 0; u < kMicro; ++u)
#pragma unroll
      for (int v = 0; v < kMicro; ++v) {
        const int64_t i = i0 + ty + 16 * u, j = j0 + tx + 16 * v;
        if (i < p.S && j < p.S) p.partial[(split * p.S + i) * p.S + j] = acc[u][v];
      }
  }
}

// ---- finalize: D (and its mirror), per-tile sums of exp(-D_ij) over i < j ----------------------------
template <typename T, class Ctx>
DDT_HD void finalize_block(const Ctx& ctx, const IsibParams<T>& p, unsigned char* smem) {
  using R = opmath_t<T>;
  R* tile = reinterpret_cast<R*>(smem);  // [kSquare][kSquare + 1]
  R* red = tile + kSquare * (kSquare + 1);
  const int64_t S = p.S, t32 = ceil_div(S, kSquare);
  const int tx = ctx.thread() % kSquare, ty = ctx.thread() / kSquare, rows_per_pass = kThreads / kSquare;
  for (int64_t b = ctx.block(); b < t32 * t32; b += ctx.blocks()) {
    const int64_t ta = b / t32, tb = b - ta * t32;
    if (ta > tb) continue;
    R acc = R(0);
    for (int r = ty; r < kSquare; r += rows_per_pass) {
      const int64_t i = ta * kSquare + r, j = tb * kSquare + tx;
      R v = R(0);
      if (i < S && j < S && i != j) {
        const int64_t lo = i < j ? i : j, hi = i < j ? j : i;
        for (int64_t s = 0; s < p.splits; ++s) v += p.partial[(s * S + lo) * S + hi];
        v *= p.inv_n;
      }
      if (i < S && j < S) p.D[i * S + j] = v;
      tile[r * (kSquare + 1) + tx] = v;
      if (p.tile_loss != nullptr && i < j && j < S) acc += exp_op(-v);
    }
    ctx.sync();
    if (ta < tb) {
      for (int r = ty; r < kSquare; r += rows_per_pass) {
        const int64_t j = tb * kSquare + r, i = ta * kSquare + tx;
        if (i < S && j < S) p.D[j * S + i] = tile[tx * (kSquare + 1) + r];
      }
    }
    if (p.tile_loss != nullptr) {
      acc = ctx.warp_sum(acc);
      if (ctx.lane() == 0) red[ctx.warp()] = acc;
      ctx.sync();
      if (ctx.thread() == 0) {
        R total = R(0);
        for (int w = 0; w < ctx.warps(); ++w) total += red[w];
        p.tile_loss[b] = total;
      }
    }
    ctx.sync();
  }
}

// ---- ISIB loss: fixed-order sum of the tile sums ---------------------------------------------------
template <typename T, class Ctx>
DDT_HD void isib_total_block(const Ctx& ctx, const IsibParams<T>& p, unsigned char* smem) {
  using R = opmath_t<T>;
  R* red = reinterpret_cast<R*>(smem);
  const int64_t t32 = ceil_div(p.S, kSquare);
  R acc = R(0);
  for (int64_t b = ctx.thread(); b < t32 * t32; b += kThreads) {
    if (b / t32 <= b % t32) acc += p.tile_loss[b];
  }
  acc = ctx.warp_sum(acc);
  if (ctx.lane() == 0) red[ctx.warp()] = acc;
  ctx.sync();
  if (ctx.thread() == 0) {
    R total = R(0);
    for (int w = 0; w < ctx.warps(); ++w) total += red[w];
    p.loss[0] = p.S > 1 ? total * p.inv_pairs : R(0);
  }
}

// ---- backward: Gs and a_i = sum_j Gs_ij / N, one warp per row -----------------------------------
template <bool ISIB, typename T, class Ctx>
DDT_HD void prepare_block(const Ctx& ctx, const IsibParams<T>& p) {
  using R = opmath_t<T>;
  const int64_t S = p.S;
  const R coef = ISIB ? -p.grad_loss[0] * p.inv_pairs : R(0);
  for (int64_t i = ctx.block() * ctx.warps() + ctx.warp(); i < S; i += ctx.blocks() * ctx.warps()) {
    R acc = R(0);
    for (int64_t j = ctx.lane(); j < S; j += kWarp) {
      R g = R(0);
      if (i != j) {
        if (ISIB) {
          g = coef * exp_op(-p.D_in[(i < j ? i : j) * S + (i < j ? j : i)]);
        } else {
          g = p.grad_D[i * S + j] + p.grad_D[j * S + i];
        }
      }
      p.Gs[i * S + j] = g;
      acc += g;
    }
    acc = ctx.warp_sum(acc);
    if (ctx.lane() == 0) p.a[i] = acc * p.inv_n;
  }
}

// ---- backward tiles: U = Gs @ logP, V = Gs @ P on a 64 x 64 tile of [S, K], epilogue q ----------
template <typename T, class Ctx>
DDT_HD void gemm_tiles_block(const Ctx& ctx, const IsibParams<T>& p, unsigned char* smem) {
  using R = opmath_t<T>;
  constexpr int BK = depth<R>();
  R* sG = reinterpret_cast<R*>(smem);  // [BK][kPad]: Gs[i0 + row, jc + jj] at jj * kPad + row
  R* sP = sG + BK * kPad;              // [BK][kPad]: p[jc + jj, k0 + col]
  R* sL = sP + BK * kPad;
  const int tx = ctx.thread() % 16, ty = ctx.thread() / 16;
  const int64_t S = p.S, ti = ceil_div(S, kTile), tk = ceil_div(p.K, kTile);
  for (int64_t b = ctx.block(); b < ti * tk; b += ctx.blocks()) {
    const int64_t bk = b / ti, bi = b - bk * ti, i0 = bi * kTile, k0 = bk * kTile;
    R U[kMicro][kMicro] = {}, V[kMicro][kMicro] = {};
    for (int64_t jc = 0; jc < S; jc += BK) {
      ctx.for_each(kTile * BK, [&](int e) {
        const int row = e / BK, jj = e - row * BK;
        const int64_t i = i0 + row, j = jc + jj;
        sG[jj * kPad + row] = (i < S && j < S) ? p.Gs[i * S + j] : R(0);
      });
      ctx.for_each(BK * kTile, [&](int e) {
        const int jj = e / kTile, col = e - jj * kTile;
        const int64_t j = jc + jj, k = k0 + col;
        softmax_entry(p, j, k, j < S && k < p.K, sP[jj * kPad + col], sL[jj * kPad + col]);
      });
      ctx.sync();
#pragma unroll 4
      for (int jj = 0; jj < BK; ++jj) {
        R g[kMicro], pv[kMicro], lv[kMicro];
#pragma unroll
        for (int u = 0; u < kMicro; ++u) {
          g[u] = sG[jj * kPad + ty + 16 * u];
          pv[u] = sP[jj * kPad + tx + 16 * u];
          lv[u] = sL[jj * kPad + tx + 16 * u];
        }
#pragma unroll
        for (int u = 0; u < kMicro; ++u)
#pragma unroll
          for (int v = 0; v < kMicro; ++v) {
            U[u][v] += g[u] * lv[v];
            V[u][v] += g[u] * pv[v];
          }
      }
      ctx.sync();
    }
#pragma unroll
    for (int u = 0; u < kMicro; ++u) {
      const int64_t i = i0 + ty + 16 * u;
      if (i >= S) continue;
      const R ai = p.a[i];
#pragma unroll
      for (int v = 0; v < kMicro; ++v) {
        const int64_t k = k0 + tx + 16 * v;
        if (k >= p.K) continue;
        R prob, logp;
        softmax_entry(p, i, k, true, prob, logp);
        p.q[i * p.K + k] = prob * (ai * logp - U[u][v] * p.inv_n) + (ai * prob - V[u][v] * p.inv_n);
      }
    }
  }
}

// ---- backward rows: grad_x = (q - p * sum_l q) / tau, one warp per (sample, channel) row ----------
template <typename T, class Ctx>
DDT_HD void row_backward_block(const Ctx& ctx, const IsibParams<T>& p) {
  using R = opmath_t<T>;
  const int64_t rows = p.S * p.N;
  for (int64_t row = ctx.block() * ctx.warps() + ctx.warp(); row < rows; row += ctx.blocks() * ctx.warps()) {
    const R* qr = p.q + row * p.L;
    const T* xr = p.x + row * p.L;
    R sum = R(0);
    for (int64_t l = ctx.lane(); l < p.L; l += kWarp) sum += qr[l];
    sum = ctx.warp_sum(sum);
    const R lse = p.lse[row];
    for (int64_t l = ctx.lane(); l < p.L; l += kWarp) {
      const R prob = exp_op(to_op(xr[l]) * p.inv_tau - lse);
      p.grad_x[row * p.L + l] = from_op<T>((qr[l] - prob * sum) * p.inv_tau);
    }
  }
}

// ---- kernels ------------------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kThreads) row_stats_kernel(IsibParams<T> p) {
  row_stats_block(DeviceCtx{}, p);
}
template <typename T>
__global__ void __launch_bounds__(kThreads) pair_tiles_kernel(IsibParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  pair_tiles_block(DeviceCtx{}, p, smem);
}
template <typename T>
__global__ void __launch_bounds__(kThreads) finalize_kernel(IsibParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  finalize_block(DeviceCtx{}, p, smem);
}
template <typename T>
__global__ void __launch_bounds__(kThreads) isib_total_kernel(IsibParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  isib_total_block(DeviceCtx{}, p, smem);
}
template <bool ISIB, typename T>
__global__ void __launch_bounds__(kThreads) prepare_kernel(IsibParams<T> p) {
  prepare_block<ISIB>(DeviceCtx{}, p);
}
template <typename T>
__global__ void __launch_bounds__(kThreads) gemm_tiles_kernel(IsibParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  gemm_tiles_block(DeviceCtx{}, p, smem);
}
template <typename T>
__global__ void __launch_bounds__(kThreads) row_backward_kernel(IsibParams<T> p) {
  row_backward_block(DeviceCtx{}, p);
}

// ---- configuration ----------------------------------------------------------------------------------------
constexpr int64_t kMaxGrid = int64_t{1} << 30;

template <typename R>
constexpr size_t pair_smem() {
  return 4 * depth<R>() * kPad * sizeof(R);
}
template <typename R>
constexpr size_t gemm_smem() {
  return 3 * depth<R>() * kPad * sizeof(R);
}
template <typename R>
constexpr size_t finalize_smem() {
  return (kSquare * (kSquare + 1) + kThreads / kWarp) * sizeof(R);
}

int64_t warp_rows_grid(int64_t rows) { return std::min(ceil_div(rows, kThreads / kWarp), kMaxGrid); }

struct ForwardLayout {
  int64_t tiles, splits, chunks_per_split, t32;
  int64_t lse, partial, tile_loss, total;  // element offsets into the workspace and its size
};

ForwardLayout forward_layout(int64_t S, int64_t N, int64_t L, int depth_k, int sm_count) {
  ForwardLayout f{};
  const int64_t K = N * L;
  f.tiles = ceil_div(S, kTile);
  const int64_t chunks = ceil_div(K, depth_k);
  const int64_t tile_pairs = f.tiles * (f.tiles + 1) / 2;
  const int64_t want = std::max<int64_t>(1, ceil_div(2 * int64_t{sm_count}, tile_pairs));
  const int64_t splits = std::min<int64_t>({want, chunks, kMaxSplits});
  f.chunks_per_split = ceil_div(chunks, splits);
  f.splits = ceil_div(chunks, f.chunks_per_split);
  f.t32 = ceil_div(S, kSquare);
  f.lse = 0;
  f.partial = S * N;
  f.tile_loss = f.partial + f.splits * S * S;
  f.total = f.tile_loss + f.t32 * f.t32;
  return f;
}

bool valid_shape(int64_t S, int64_t N, int64_t L) {
  return S >= 1 && N >= 1 && L >= 1 && S <= (int64_t{1} << 20) && N * L < (int64_t{1} << 31);
}

template <typename T>
IsibParams<T> base_params(const T* x, int64_t S, int64_t N, int64_t L, double tau) {
  using R = opmath_t<T>;
  IsibParams<T> p{};
  p.x = x;
  p.S = S;
  p.N = N;
  p.L = L;
  p.K = N * L;
  p.inv_tau = static_cast<R>(1.0 / tau);
  p.inv_n = static_cast<R>(1.0 / static_cast<double>(N));
  p.inv_pairs = S > 1 ? static_cast<R>(2.0 / (static_cast<double>(S) * static_cast<double>(S - 1))) : R(0);
  return p;
}

template <typename T>
cudaError_t launch_backward(bool isib, IsibParams<T> p, opmath_t<T>* workspace, cudaStream_t stream) {
  using R = opmath_t<T>;
  const int64_t S = p.S;
  p.lse = workspace;
  p.Gs = p.lse + S * p.N;
  p.a = p.Gs + S * S;
  p.q = p.a + S;
  row_stats_kernel<T><<<static_cast<unsigned>(warp_rows_grid(S * p.N)), kThreads, 0, stream>>>(p);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (isib) {
    prepare_kernel<true, T><<<static_cast<unsigned>(warp_rows_grid(S)), kThreads, 0, stream>>>(p);
  } else {
    prepare_kernel<false, T><<<static_cast<unsigned>(warp_rows_grid(S)), kThreads, 0, stream>>>(p);
  }
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t gemm_grid = std::min(ceil_div(S, kTile) * ceil_div(p.K, kTile), kMaxGrid);
  gemm_tiles_kernel<T><<<static_cast<unsigned>(gemm_grid), kThreads, gemm_smem<R>(), stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  row_backward_kernel<T><<<static_cast<unsigned>(warp_rows_grid(S * p.N)), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t pairwise_kl_forward_workspace(int64_t S, int64_t N, int64_t L, int opmath_size, int64_t* elements) {
  *elements = 0;
  if (!valid_shape(S, N, L)) return cudaErrorInvalidValue;
  DeviceLimits lim{};
  const cudaError_t err = detail::device_limits(&lim);
  if (err != cudaSuccess) return err;
  const int depth_k = opmath_size == 4 ? depth<float>() : depth<double>();
  *elements = forward_layout(S, N, L, depth_k, lim.sm_count).total;
  return cudaSuccess;
}

int64_t pairwise_kl_backward_workspace(int64_t S, int64_t N, int64_t L) { return S * N + S * S + S + S * N * L; }

template <typename T>
cudaError_t launch_pairwise_kl_forward(const T* x, int64_t S, int64_t N, int64_t L, double tau, opmath_t<T>* D,
                                       opmath_t<T>* loss, opmath_t<T>* workspace, cudaStream_t stream) {
  using R = opmath_t<T>;
  if (!valid_shape(S, N, L)) return cudaErrorInvalidValue;
  DeviceLimits lim{};
  cudaError_t err = detail::device_limits(&lim);
  if (err != cudaSuccess) return err;
  const ForwardLayout f = forward_layout(S, N, L, depth<R>(), lim.sm_count);
  IsibParams<T> p = base_params(x, S, N, L, tau);
  p.tiles = f.tiles;
  p.splits = f.splits;
  p.chunks_per_split = f.chunks_per_split;
  p.lse = workspace + f.lse;
  p.partial = workspace + f.partial;
  p.tile_loss = loss != nullptr ? workspace + f.tile_loss : nullptr;
  p.D = D;
  p.loss = loss;
  row_stats_kernel<T><<<static_cast<unsigned>(warp_rows_grid(S * N)), kThreads, 0, stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t pair_grid = std::min(f.tiles * f.tiles * f.splits, kMaxGrid);
  pair_tiles_kernel<T><<<static_cast<unsigned>(pair_grid), kThreads, pair_smem<R>(), stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t fin_grid = std::min(f.t32 * f.t32, kMaxGrid);
  finalize_kernel<T><<<static_cast<unsigned>(fin_grid), kThreads, finalize_smem<R>(), stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if (loss != nullptr) {
    isib_total_kernel<T><<<1, kThreads, (kThreads / kWarp) * sizeof(R), stream>>>(p);
    err = cudaGetLastError();
  }
  return err;
}

template <typename T>
cudaError_t launch_pairwise_kl_backward(const opmath_t<T>* grad_D, const T* x, int64_t S, int64_t N, int64_t L,
                                        double tau, T* grad_x, opmath_t<T>* workspace, cudaStream_t stream) {
  if (!valid_shape(S, N, L)) return cudaErrorInvalidValue;
  IsibParams<T> p = base_params(x, S, N, L, tau);
  p.grad_D = grad_D;
  p.grad_x = grad_x;
  return launch_backward(false, p, workspace, stream);
}

template <typename T>
cudaError_t launch_isib_backward(const opmath_t<T>* grad_loss, const opmath_t<T>* D, const T* x, int64_t S,
                                 int64_t N, int64_t L, double tau, T* grad_x, opmath_t<T>* workspace,
                                 cudaStream_t stream) {
  if (!valid_shape(S, N, L)) return cudaErrorInvalidValue;
  IsibParams<T> p = base_params(x, S, N, L, tau);
  p.grad_loss = grad_loss;
  p.D_in = D;
  p.grad_x = grad_x;
  return launch_backward(true, p, workspace, stream);
}

// The host emulator of tests/test_cuda_compile.py includes this file and runs the block programs
// on the CPU; it defines DDTIME_KERNELS_HOST_EMULATION to skip compiling the device kernels.
#ifndef DDTIME_KERNELS_HOST_EMULATION
#define DDTIME_INSTANTIATE(T)                                                                                   \
  template cudaError_t launch_pairwise_kl_forward<T>(const T*, int64_t, int64_t, int64_t, double,             \
                                                     opmath_t<T>*, opmath_t<T>*, opmath_t<T>*, cudaStream_t); \
  template cudaError_t launch_pairwise_kl_backward<T>(const opmath_t<T>*, const T*, int64_t, int64_t, int64_t, \
                                                      double, T*, opmath_t<T>*, cudaStream_t);                 \
  template cudaError_t launch_isib_backward<T>(const opmath_t<T>*, const opmath_t<T>*, const T*, int64_t,      \
                                               int64_t, int64_t, double, T*, opmath_t<T>*, cudaStream_t);
DDTIME_INSTANTIATE(__half)
DDTIME_INSTANTIATE(__nv_bfloat16)
DDTIME_INSTANTIATE(float)
DDTIME_INSTANTIATE(double)
#undef DDTIME_INSTANTIATE
#endif  // DDTIME_KERNELS_HOST_EMULATION

}  // namespace ddtime::kernels
