// Value loss / frequency alignment kernels: one pass per series, real FFT on chip.
//
// A thread block owns a tile of consecutive series (flat index r = o * inner + i). For each tile:
//   1. load   d = input - target into shared memory (coalesced: along time for [.., H] layouts,
//             along the inner axis, i.e. consecutive series, for [.., H, N] layouts);
//   2. FFT    an even H is packed as M = H/2 complex points z[n] = d[2n] + i d[2n+1] (half-length
//             real FFT), an odd H is transformed as M = H complex points; mixed-radix Stockham
//             stages (8, 4, 2, 3, 5, 7, any other prime by a direct per-output stage), twiddles
//             from a per-block table computed in double precision;
//   3. bins   D_k for k < F = H/2 + 1 is unpacked, |D_k| and the MSE term are reduced per series by
//             one warp in a fixed order (lane-strided partial sums, xor-shuffle tree);
//   4. grad   the coefficients alpha/F * D_k/|D_k| of the Hermitian half spectrum go through the
//             inverse real FFT (same machinery, opposite sign) and 2(1-alpha)/H d[t] is added.
// Each phase is a block-wide loop separated by barriers and written against an execution context
// (DeviceCtx of kernel_common.cuh), so the identical block program can also be run by a host emulator (see
// tests/test_cuda_compile.py). No atomics: results do not depend on block scheduling.
#include "value_loss_kernel.cuh"

#include <algorithm>
#include <cmath>

#include "device_fft.cuh"
#include "kernel_common.cuh"

namespace ddtime::kernels {
namespace {

using detail::Cx;
using detail::DeviceCtx;
using detail::DeviceLimits;
using detail::FftPlan;
using detail::from_op;
using detail::hermitian_entry;
using detail::hypot_op;
using detail::imin;
using detail::kWarp;
using detail::make_plan;
using detail::pack_bin;
using detail::run_fft;
using detail::to_op;
using detail::twiddle_entry;
using detail::unpack_bin;

constexpr int kMaxThreads = 256;
constexpr int kBlocksPerSm = 8;  // grid cap: about two waves of resident blocks
constexpr size_t kSmemTarget = 48 * 1024;  // shared memory per block: four blocks fit in one SM

// ---- the block program -----------------------------------------------------------------------------
enum class Mode : int { kValueLoss, kBins, kBinsBackward };

template <typename T>
struct SeriesParams {
  using R = opmath_t<T>;
  const T* a;  // input, or grad_modulus (kBinsBackward)
  Strides3 sa;
  const T* b;  // target
  Strides3 sb;
  const R* phase_in;  // kBinsBackward: contiguous [outer, F, inner, 2]
  int64_t inner, num_series, num_tiles;
  int H, F, M, tile;
  bool packed;            // H even: half-length complex FFT
  bool load_time_major;   // loads iterate series fastest (time axis strided)
  bool store_time_major;  // stores iterate series fastest (inner > 1)
  FftPlan plan;
  R alpha_over_F, mse_scale, grad_mse_scale;
  R* rows;            // kValueLoss
  T* out;             // grad (kValueLoss, may be null; kBinsBackward) or modulus (kBins)
  R* phase_out;       // kBins
  unsigned char* workspace;  // global-memory fallback: block_bytes per block, else null
  size_t block_bytes;
};

template <typename R>
size_t series_bytes(int M) {
  return 3 * static_cast<size_t>(M + 1) * sizeof(Cx<R>) + 3 * sizeof(int64_t);
}
template <typename R>
size_t table_bytes(int H) {
  return static_cast<size_t>(H / 2 + 1) * sizeof(Cx<R>);
}

template <Mode MODE, typename T, class Ctx>
DDT_HD void series_block(const Ctx& ctx, const SeriesParams<T>& p, unsigned char* smem) {
  using R = opmath_t<T>;
  using C = Cx<R>;
  const int H = p.H, F = p.F, M = p.M, stride = M + 1;
  C* buf0 = reinterpret_cast<C*>(smem);
  C* buf1 = buf0 + p.tile * stride;
  C* buf2 = buf1 + p.tile * stride;
  C* tw = buf2 + p.tile * stride;
  int64_t* off_a = reinterpret_cast<int64_t*>(tw + H / 2 + 1);
  int64_t* off_b = off_a + p.tile;
  int64_t* off_out = off_b + p.tile;
  const int out_len = MODE == Mode::kBins ? F : H;
  const bool want_grad = MODE == Mode::kBinsBackward || (MODE == Mode::kValueLoss && p.out != nullptr);

  ctx.for_each(H / 2 + 1, [&](int j) { tw[j] = twiddle_entry<R>(j, H); });

  for (int64_t tile = ctx.block(); tile < p.num_tiles; tile += ctx.blocks()) {
    const int64_t r0 = tile * p.tile;
    const int cnt = static_cast<int>(imin(p.tile, p.num_series - r0));
    ctx.for_each(cnt, [&](int s) {
      const int64_t r = r0 + s, o = r / p.inner, i = r - o * p.inner;
      off_a[s] = o * p.sa.outer + i * p.sa.inner;
      off_b[s] = MODE == Mode::kBinsBackward ? o * F * p.inner + i : o * p.sb.outer + i * p.sb.inner;
      off_out[s] = o * out_len * p.inner + i;
    });
    ctx.sync();

    // Series-fastest or time-fastest enumeration of cnt x len items.
    const auto split = [&](bool time_major, int e, int len, int& s, int& t) {
      if (time_major) {
        t = e / cnt;
        s = e - t * cnt;
      } else {
        s = e / len;
        t = e - s * len;
      }
    };

    C* grad_src = nullptr;  // Hermitian half spectrum of the gradient, when wanted
    C* spare = nullptr;     // a free buffer (never buf0 while it holds d)
    if constexpr (MODE != Mode::kBinsBackward) {
      // 1. d = a - b into buf0 (real view when packed).
      ctx.for_each(cnt * H, [&](int e) {
        int s, t;
        split(p.load_time_major, e, H, s, t);
        const R d = to_op(p.a[off_a[s] + t * p.sa.length]) - to_op(p.b[off_b[s] + t * p.sb.length]);
        if (p.packed) {
          reinterpret_cast<R*>(buf0 + s * stride)[t] = d;
        } else {
          buf0[s * stride + t] = C{d, R(0)};
        }
      });
      ctx.sync();
      // 2. forward FFT; buf0 (d) stays intact.
      C* spec = run_fft<-1>(ctx, p.plan, buf0, buf1, buf2, cnt, stride, tw, H);
      const auto bin = [&](int s, int k) { return p.packed ? unpack_bin(spec + s * stride, M, k, tw) : spec[s * stride + k]; };

      if constexpr (MODE == Mode::kBins) {
        ctx.for_each(cnt * F, [&](int e) {
          int s, k;
          split(p.store_time_major, e, F, s, k);
          const C D = bin(s, k);
          const R mag = hypot_op(D.re, D.im);
          const C u = mag == R(0) ? C{R(0), R(0)} : C{D.re / mag, D.im / mag};
          const int64_t idx = off_out[s] + static_cast<int64_t>(k) * p.inner;
          p.out[idx] = from_op<T>(mag);
          p.phase_out[2 * idx] = u.re;
          p.phase_out[2 * idx + 1] = u.im;
        });
        ctx.sync();
      } else {
        // 3. per-series sums (one warp per series) and the spectral gradient coefficients.
        C* coef = spec == buf1 ? buf2 : buf1;
        const int klen = p.packed ? F : M;  // odd H: bins F..H-1 are zero padding of the inverse
        for (int s = ctx.warp(); s < cnt; s += ctx.warps()) {
          R acc = R(0);
          for (int k = ctx.lane(); k < klen; k += kWarp) {
            C c = {R(0), R(0)};
            if (k < F) {
              const C D = bin(s, k);
              const R mag = hypot_op(D.re, D.im);
              acc += p.alpha_over_F * mag;
              c = mag == R(0) ? C{R(0), R(0)} : C{p.alpha_over_F * D.re / mag, p.alpha_over_F * D.im / mag};
              if (p.packed) c = hermitian_entry(c, k == 0 || 2 * k == H);
            }
            if (want_grad) coef[s * stride + k] = c;
          }
          const R* d = reinterpret_cast<const R*>(buf0 + s * stride);
          const int dstep = p.packed ? 1 : 2;  // plain mode: real parts of (d, 0)
          R sq = R(0);
          for (int t = ctx.lane(); t < H; t += kWarp) sq += d[t * dstep] * d[t * dstep];
          const R total = ctx.warp_sum(acc + p.mse_scale * sq);
          if (ctx.lane() == 0) p.rows[r0 + s] = total;
        }
        ctx.sync();
        grad_src = coef;
        spare = spec == buf0 ? (coef == buf1 ? buf2 : buf1) : spec;
      }
    } else {
      // 1. c_k = g_k u_k as Hermitian half spectrum (odd H: zero padded to H bins) into buf0.
      const int klen = p.packed ? F : M;
      ctx.for_each(cnt * klen, [&](int e) {
        int s, k;
        split(p.store_time_major, e, klen, s, k);
        C c = {R(0), R(0)};
        if (k < F) {
          const R g = to_op(p.a[off_a[s] + static_cast<int64_t>(k) * p.sa.length]);
          const R* u = p.phase_in + 2 * (off_b[s] + static_cast<int64_t>(k) * p.inner);
          c = {g * u[0], g * u[1]};
          if (p.packed) c = hermitian_entry(c, k == 0 || 2 * k == H);
        }
        buf0[s * stride + k] = c;
      });
      ctx.sync();
      grad_src = buf0;
      spare = buf1;
    }

    if (MODE != Mode::kBins && want_grad) {
      // 4. inverse real FFT of the coefficients (+ the MSE term for the value loss), then store.
      C* src = grad_src;
      if (p.packed) {
        ctx.for_each(cnt * M, [&](int e) {
          const int s = e / M, k = e - s * M;
          spare[s * stride + k] = pack_bin(grad_src + s * stride, M, k, tw);
        });
        ctx.sync();
        src = spare;
        spare = grad_src;
      }
      const C* g = run_fft<1>(ctx, p.plan, src, spare, src, cnt, stride, tw, H);
      const R grad_mse = MODE == Mode::kValueLoss ? p.grad_mse_scale : R(0);
      ctx.for_each(cnt * H, [&](int e) {
        int s, t;
        split(p.store_time_major, e, H, s, t);
        const int step = p.packed ? 1 : 2;
        R v = reinterpret_cast<const R*>(g + s * stride)[t * step];
        if (MODE == Mode::kValueLoss) v += grad_mse * reinterpret_cast<const R*>(buf0 + s * stride)[t * step];
        p.out[off_out[s] + static_cast<int64_t>(t) * p.inner] = from_op<T>(v);
      });
    }
    ctx.sync();  // the next tile reuses the buffers and offsets
  }
}

template <Mode MODE, typename T>
__global__ void __launch_bounds__(kMaxThreads) series_kernel(SeriesParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* base = p.workspace != nullptr ? p.workspace + blockIdx.x * p.block_bytes : smem;
  series_block<MODE>(DeviceCtx{}, p, base);
}

// ---- launch configuration ----------------------------------------------------------------------------
struct Config {
  int tile = 1, threads = 64;
  int64_t grid = 1;
  size_t smem = 0;       // dynamic shared memory per block (0 with the global fallback)
  size_t block_bytes = 0;
  size_t workspace = 0;  // bytes of global workspace (global fallback only)
};

int fft_points(int64_t H) { return static_cast<int>(H % 2 == 0 ? H / 2 : H); }

Config make_config(SeriesShape shape, size_t op_size, DeviceLimits lim) {
  Config cfg;
  const int64_t series = shape.outer * shape.inner;
  const int M = fft_points(shape.length);
  const size_t per_series = op_size == sizeof(double) ? series_bytes<double>(M) : series_bytes<float>(M);
  const size_t table = op_size == sizeof(double) ? table_bytes<double>(shape.length) : table_bytes<float>(shape.length);
  const int64_t num_sm = lim.sm_count;
  if (table + per_series <= kSmemTarget) {
    const int64_t fit = static_cast<int64_t>((kSmemTarget - table) / per_series);
    // enough blocks to fill the device, but at least 8 series per tile for coalesced strided loads
    const int64_t spread = std::max<int64_t>(std::min<int64_t>(8, series), (series + 2 * num_sm - 1) / (2 * num_sm));
    cfg.tile = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({32, fit, spread})));
    if (shape.inner > 1 && cfg.tile > 8) cfg.tile -= cfg.tile % 8;  // strided time: whole 32-byte sectors
  }
  const size_t bytes = table + per_series * cfg.tile;
  const int64_t tiles = (series + cfg.tile - 1) / cfg.tile;
  const int64_t work = static_cast<int64_t>(cfg.tile) * std::max(M / 4, 1);
  cfg.threads = static_cast<int>(std::min<int64_t>(kMaxThreads, std::max<int64_t>(64, (work + kWarp - 1) / kWarp * kWarp)));
  if (bytes <= lim.smem_optin) {
    cfg.smem = bytes;
    cfg.grid = std::min<int64_t>(tiles, kBlocksPerSm * num_sm);  // blocks loop over tiles, reusing twiddles
  } else {  // one series exceeds shared memory: same program on a global-memory workspace
    cfg.block_bytes = (bytes + 255) / 256 * 256;
    cfg.grid = std::min<int64_t>(tiles, num_sm);
    cfg.workspace = cfg.block_bytes * static_cast<size_t>(cfg.grid);
    cfg.threads = kMaxThreads;
  }
  return cfg;
}

template <typename T>
SeriesParams<T> make_params(SeriesShape shape, const Config& cfg, void* workspace) {
  SeriesParams<T> p{};
  const int H = static_cast<int>(shape.length);
  p.inner = shape.inner;
  p.num_series = shape.outer * shape.inner;
  p.tile = cfg.tile;
  p.num_tiles = (p.num_series + cfg.tile - 1) / cfg.tile;
  p.H = H;
  p.F = H / 2 + 1;
  p.M = fft_points(H);
  p.packed = H % 2 == 0;
  p.store_time_major = shape.inner > 1;
  p.plan = make_plan(p.M);
  p.workspace = cfg.workspace > 0 ? static_cast<unsigned char*>(workspace) : nullptr;
  p.block_bytes = cfg.block_bytes;
  return p;
}

template <Mode MODE, typename T>
cudaError_t launch(const SeriesParams<T>& p, const Config& cfg, cudaStream_t stream) {
  if (p.num_series == 0) return cudaSuccess;
  if (cfg.smem > kSmemTarget) {
    const cudaError_t err = cudaFuncSetAttribute(series_kernel<MODE, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(cfg.smem));
    if (err != cudaSuccess) return err;
  }
  series_kernel<MODE, T><<<static_cast<unsigned>(cfg.grid), cfg.threads, cfg.smem, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t checked_config(SeriesShape shape, size_t op_size, Config* cfg) {
  if (shape.length < 1 || shape.length > (int64_t{1} << 28) || shape.outer < 0 || shape.inner < 1) {
    return cudaErrorInvalidValue;
  }
  DeviceLimits lim{};
  const cudaError_t err = detail::device_limits(&lim);
  if (err != cudaSuccess) return err;
  *cfg = make_config(shape, op_size, lim);
  return cudaSuccess;
}

template <typename T>
__global__ void scale_rows_kernel(const opmath_t<T>* grad_rows, int64_t so, int64_t si, const T* grad,
                                  int64_t H, int64_t inner, int64_t n, T* out) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = idx / (H * inner), i = idx % inner;
    out[idx] = from_op<T>(grad_rows[o * so + i * si] * to_op(grad[idx]));
  }
}

}  // namespace

cudaError_t value_loss_workspace_bytes(SeriesShape shape, int opmath_size, size_t* bytes) {
  Config cfg;
  const cudaError_t err = checked_config(shape, static_cast<size_t>(opmath_size), &cfg);
  *bytes = err == cudaSuccess ? cfg.workspace : 0;
  return err;
}

template <typename T>
cudaError_t launch_value_loss_fused(const T* input, Strides3 input_strides, const T* target, Strides3 target_strides,
                                    SeriesShape shape, double alpha, opmath_t<T>* rows, T* grad, void* workspace,
                                    cudaStream_t stream) {
  using R = opmath_t<T>;
  Config cfg;
  const cudaError_t err = checked_config(shape, sizeof(R), &cfg);
  if (err != cudaSuccess) return err;
  SeriesParams<T> p = make_params<T>(shape, cfg, workspace);
  p.a = input;
  p.sa = input_strides;
  p.b = target;
  p.sb = target_strides;
  p.load_time_major = input_strides.length != 1;
  p.alpha_over_F = static_cast<R>(alpha / p.F);
  p.mse_scale = static_cast<R>((1.0 - alpha) / p.H);
  p.grad_mse_scale = static_cast<R>(2.0 * (1.0 - alpha) / p.H);
  p.rows = rows;
  p.out = grad;
  return launch<Mode::kValueLoss>(p, cfg, stream);
}

template <typename T>
cudaError_t launch_frequency_alignment_bins(const T* input, Strides3 input_strides, const T* target,
                                            Strides3 target_strides, SeriesShape shape, T* modulus,
                                            opmath_t<T>* phase, void* workspace, cudaStream_t stream) {
  Config cfg;
  const cudaError_t err = checked_config(shape, sizeof(opmath_t<T>), &cfg);
  if (err != cudaSuccess) return err;
  SeriesParams<T> p = make_params<T>(shape, cfg, workspace);
  p.a = input;
  p.sa = input_strides;
  p.b = target;
  p.sb = target_strides;
  p.load_time_major = input_strides.length != 1;
  p.out = modulus;
  p.phase_out = phase;
  return launch<Mode::kBins>(p, cfg, stream);
}

template <typename T>
cudaError_t launch_frequency_alignment_bins_backward(const T* grad_modulus, Strides3 grad_modulus_strides,
                                                     const opmath_t<T>* phase, SeriesShape shape, T* grad,
                                                     void* workspace, cudaStream_t stream) {
  Config cfg;
  const cudaError_t err = checked_config(shape, sizeof(opmath_t<T>), &cfg);
  if (err != cudaSuccess) return err;
  SeriesParams<T> p = make_params<T>(shape, cfg, workspace);
  p.a = grad_modulus;
  p.sa = grad_modulus_strides;
  p.phase_in = phase;
  p.out = grad;
  return launch<Mode::kBinsBackward>(p, cfg, stream);
}

template <typename T>
cudaError_t launch_scale_rows(const opmath_t<T>* grad_rows, int64_t rows_outer_stride, int64_t rows_inner_stride,
                              const T* grad, SeriesShape shape, T* out, cudaStream_t stream) {
  const int64_t n = shape.outer * shape.length * shape.inner;
  if (n == 0) return cudaSuccess;
  constexpr int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, int64_t{1} << 20);
  scale_rows_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      grad_rows, rows_outer_stride, rows_inner_stride, grad, shape.length, shape.inner, n, out);
  return cudaGetLastError();
}

// The host emulator of tests/test_cuda_compile.py includes this file and runs the block programs
// on the CPU; it defines DDTIME_KERNELS_HOST_EMULATION to skip compiling the device kernels.
#ifndef DDTIME_KERNELS_HOST_EMULATION
#define DDTIME_INSTANTIATE(T)                                                                                     \
  template cudaError_t launch_value_loss_fused<T>(const T*, Strides3, const T*, Strides3, SeriesShape, double,  \
                                                  opmath_t<T>*, T*, void*, cudaStream_t);                       \
  template cudaError_t launch_frequency_alignment_bins<T>(const T*, Strides3, const T*, Strides3, SeriesShape,  \
                                                          T*, opmath_t<T>*, void*, cudaStream_t);               \
  template cudaError_t launch_frequency_alignment_bins_backward<T>(const T*, Strides3, const opmath_t<T>*,      \
                                                                   SeriesShape, T*, void*, cudaStream_t);       \
  template cudaError_t launch_scale_rows<T>(const opmath_t<T>*, int64_t, int64_t, const T*, SeriesShape, T*,    \
                                            cudaStream_t);
DDTIME_INSTANTIATE(__half)
DDTIME_INSTANTIATE(__nv_bfloat16)
DDTIME_INSTANTIATE(float)
DDTIME_INSTANTIATE(double)
#undef DDTIME_INSTANTIATE
#endif  // DDTIME_KERNELS_HOST_EMULATION

}  // namespace ddtime::kernels
