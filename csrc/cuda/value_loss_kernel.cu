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

#include "kernel_common.cuh"

namespace ddtime::kernels {
namespace {

using detail::DeviceCtx;
using detail::DeviceLimits;
using detail::from_op;
using detail::hypot_op;
using detail::imin;
using detail::kWarp;
using detail::to_op;

constexpr int kMaxStages = 32;
constexpr int kMaxThreads = 256;
constexpr int kBlocksPerSm = 8;  // grid cap: about two waves of resident blocks
constexpr size_t kSmemTarget = 48 * 1024;  // shared memory per block: four blocks fit in one SM

// ---- complex arithmetic --------------------------------------------------------------------------
template <typename R>
struct Cx {
  R re, im;
};
template <typename R>
DDT_HD Cx<R> operator+(Cx<R> a, Cx<R> b) { return {a.re + b.re, a.im + b.im}; }
template <typename R>
DDT_HD Cx<R> operator-(Cx<R> a, Cx<R> b) { return {a.re - b.re, a.im - b.im}; }
template <typename R>
DDT_HD Cx<R> operator*(Cx<R> a, Cx<R> b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
template <typename R>
DDT_HD Cx<R> scale(Cx<R> a, R s) { return {a.re * s, a.im * s}; }
template <typename R>
DDT_HD Cx<R> conj(Cx<R> a) { return {a.re, -a.im}; }
// SIGN * i * a
template <int SIGN, typename R>
DDT_HD Cx<R> times_i(Cx<R> a) { return SIGN > 0 ? Cx<R>{-a.im, a.re} : Cx<R>{a.im, -a.re}; }

// tw[j] = exp(-2 pi i j / n) for 0 <= j <= n / 2, in double precision.
template <typename R>
DDT_HD Cx<R> twiddle_entry(int j, int n) {
  double s, c;
#ifdef __CUDA_ARCH__
  sincospi(2.0 * j / n, &s, &c);
#else
  const double angle = 3.14159265358979323846 * (2.0 * j / n);  // host emulation only
  s = std::sin(angle);
  c = std::cos(angle);
#endif
  return {static_cast<R>(c), static_cast<R>(-s)};
}

// exp(SIGN * 2 pi i e / n) for 0 <= e < n from the half table.
template <int SIGN, typename R>
DDT_HD Cx<R> twiddle(const Cx<R>* tw, int n, int e) {
  const Cx<R> w = (2 * e <= n) ? tw[e] : conj(tw[n - e]);
  return SIGN < 0 ? w : conj(w);
}

// ---- small DFT butterflies: v[k] <- sum_q v[q] exp(SIGN 2 pi i k q / RADIX) --------------------
// cos / sin of 2 pi j / R for the odd radices 3, 5, 7 (1 <= j <= (R - 1) / 2).
DDT_HD constexpr double root_cos(int R, int j) {
  return R == 3 ? -0.5
       : R == 5 ? (j == 1 ? 0.3090169943749474241022934 : -0.8090169943749474241022934)
                : (j == 1 ? 0.6234898018587335305250049
                   : j == 2 ? -0.2225209339563144042889026 : -0.9009688679024191262361023);
}
DDT_HD constexpr double root_sin(int R, int j) {
  return R == 3 ? 0.8660254037844386467637232
       : R == 5 ? (j == 1 ? 0.9510565162951535721164393 : 0.587785252292473129168706)
                : (j == 1 ? 0.7818314824680298087084445
                   : j == 2 ? 0.9749279121818236070181317 : 0.4338837391175581204757683);
}

template <int SIGN, typename R>
DDT_HD void dft4(Cx<R>& v0, Cx<R>& v1, Cx<R>& v2, Cx<R>& v3) {
  const Cx<R> t0 = v0 + v2, t1 = v0 - v2, t2 = v1 + v3, t3 = times_i<SIGN>(v1 - v3);
  v0 = t0 + t2;
  v2 = t0 - t2;
  v1 = t1 + t3;
  v3 = t1 - t3;
}

template <int RADIX, int SIGN, typename R>
DDT_HD void small_dft(Cx<R>* v) {
  if constexpr (RADIX == 2) {
    const Cx<R> a = v[0], b = v[1];
    v[0] = a + b;
    v[1] = a - b;
  } else if constexpr (RADIX == 4) {
    dft4<SIGN>(v[0], v[1], v[2], v[3]);
  } else if constexpr (RADIX == 8) {
    dft4<SIGN>(v[0], v[2], v[4], v[6]);
    dft4<SIGN>(v[1], v[3], v[5], v[7]);
    const R h = static_cast<R>(0.7071067811865475244008444);
    const Cx<R> o1 = {h * (v[3].re - SIGN * v[3].im), h * (v[3].im + SIGN * v[3].re)};   // w8^1
    const Cx<R> o2 = times_i<SIGN>(v[5]);                                                // w8^2
    const Cx<R> o3 = {h * (-v[7].re - SIGN * v[7].im), h * (-v[7].im + SIGN * v[7].re)};  // w8^3
    const Cx<R> e0 = v[0], e1 = v[2], e2 = v[4], e3 = v[6], o0 = v[1];
    v[0] = e0 + o0;
    v[4] = e0 - o0;
    v[1] = e1 + o1;
    v[5] = e1 - o1;
    v[2] = e2 + o2;
    v[6] = e2 - o2;
    v[3] = e3 + o3;
    v[7] = e3 - o3;
  } else {  // odd radix 3, 5, 7: pairs k, R - k share the cosine sums
    constexpr int half = (RADIX - 1) / 2;
    Cx<R> a[half], b[half];
    Cx<R> sum = v[0];
#pragma unroll
    for (int m = 1; m <= half; ++m) {
      a[m - 1] = v[m] + v[RADIX - m];
      b[m - 1] = v[m] - v[RADIX - m];
      sum = sum + a[m - 1];
    }
    Cx<R> out[RADIX];
    out[0] = sum;
#pragma unroll
    for (int k = 1; k <= half; ++k) {
      Cx<R> even = v[0], odd = {R(0), R(0)};
#pragma unroll
      for (int m = 1; m <= half; ++m) {
        const int j = (k * m) % RADIX;
        const int jr = j <= half ? j : RADIX - j;
        const R c = static_cast<R>(root_cos(RADIX, jr));
        const R s = static_cast<R>(j <= half ? root_sin(RADIX, jr) : -root_sin(RADIX, jr));
        even = even + scale(a[m - 1], c);
        odd = odd + scale(b[m - 1], s);
      }
      const Cx<R> rot = times_i<SIGN>(odd);
      out[k] = even + rot;
      out[RADIX - k] = even - rot;
    }
#pragma unroll
    for (int k = 0; k < RADIX; ++k) v[k] = out[k];
  }
}

// ---- Stockham stages ------------------------------------------------------------------------------
// One stage on `cnt` series of M points (series stride `stride`), Ns = product of the radices of
// the stages before; tw is the table of the length-H transform (M divides H).
template <int RADIX, int SIGN, typename R, class Ctx>
DDT_HD void fft_stage(const Ctx& ctx, const Cx<R>* src, Cx<R>* dst, int cnt, int stride, int M, int Ns,
                      const Cx<R>* tw, int H) {
  const int m = M / RADIX;
  const int tstep = (M / (Ns * RADIX)) * (H / M);
  ctx.for_each(cnt * m, [&](int idx) {
    const int s = idx / m, j = idx - s * m, js = j % Ns;
    const Cx<R>* in = src + s * stride;
    Cx<R> v[RADIX];
    v[0] = in[j];
#pragma unroll
    for (int r = 1; r < RADIX; ++r) v[r] = in[j + r * m] * twiddle<SIGN>(tw, H, r * js * tstep);
    small_dft<RADIX, SIGN>(v);
    Cx<R>* out = dst + s * stride + (j - js) * RADIX + js;
#pragma unroll
    for (int r = 0; r < RADIX; ++r) out[r * Ns] = v[r];
  });
  ctx.sync();
}

// Any prime radix p: one thread per output, O(p) work each.
template <int SIGN, typename R, class Ctx>
DDT_HD void fft_stage_prime(const Ctx& ctx, const Cx<R>* src, Cx<R>* dst, int cnt, int stride, int M, int Ns,
                            int p, const Cx<R>* tw, int H) {
  const int m = M / p;
  const int tstep = (M / (Ns * p)) * (H / M);
  const int root = H / p;
  ctx.for_each(cnt * M, [&](int idx) {
    const int s = idx / M, rest = idx - s * M, j = rest / p, r = rest - j * p, js = j % Ns;
    const Cx<R>* in = src + s * stride;
    Cx<R> acc = in[j];
    int e = r;  // (r * q) mod p
    for (int q = 1; q < p; ++q) {
      const Cx<R> v = in[j + q * m] * twiddle<SIGN>(tw, H, q * js * tstep);
      acc = acc + v * twiddle<SIGN>(tw, H, e * root);
      e += r;
      if (e >= p) e -= p;
    }
    dst[s * stride + (j - js) * p + js + r * Ns] = acc;
  });
  ctx.sync();
}

struct FftPlan {
  int n;       // number of complex points
  int stages;  // number of radices
  int radix[kMaxStages];
};

FftPlan make_plan(int n) {
  FftPlan plan{n, 0, {}};
  int rest = n;
  for (const int r : {8, 4, 2, 3, 5, 7}) {
    while (rest % r == 0) {
      plan.radix[plan.stages++] = r;
      rest /= r;
    }
  }
  for (int p = 11; rest > 1; p += 2) {
    if (static_cast<int64_t>(p) * p > rest) p = rest;  // what is left is prime
    while (rest % p == 0) {
      plan.radix[plan.stages++] = p;
      rest /= p;
    }
  }
  return plan;
}

// Runs the plan on src; stage s writes to (s even ? a : b). Returns the buffer holding the result.
template <int SIGN, typename R, class Ctx>
DDT_HD Cx<R>* run_fft(const Ctx& ctx, const FftPlan& plan, Cx<R>* src, Cx<R>* a, Cx<R>* b, int cnt, int stride,
                      const Cx<R>* tw, int H) {
  Cx<R>* cur = src;
  int ns = 1;
  for (int st = 0; st < plan.stages; ++st) {
    Cx<R>* dst = (st % 2 == 0) ? a : b;
    const int r = plan.radix[st];
    switch (r) {
      case 2: fft_stage<2, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      case 3: fft_stage<3, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      case 4: fft_stage<4, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      case 5: fft_stage<5, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      case 7: fft_stage<7, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      case 8: fft_stage<8, SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, tw, H); break;
      default: fft_stage_prime<SIGN>(ctx, cur, dst, cnt, stride, plan.n, ns, r, tw, H); break;
    }
    cur = dst;
    ns *= r;
  }
  return cur;
}

// ---- real-FFT packing ----------------------------------------------------------------------------
// D_k (0 <= k <= M) of the length-2M real series from Z = FFT_M(d[2n] + i d[2n+1]).
template <typename R>
DDT_HD Cx<R> unpack_bin(const Cx<R>* Z, int M, int k, const Cx<R>* tw) {
  const Cx<R> zk = Z[k == M ? 0 : k];
  const Cx<R> zm = conj(Z[k == 0 ? 0 : M - k]);
  const Cx<R> even = scale(zk + zm, R(0.5));
  const Cx<R> diff = zk - zm;
  const Cx<R> odd = {diff.im * R(0.5), -diff.re * R(0.5)};  // diff / (2i)
  return even + tw[k] * odd;
}

// Input of the inverse half-length FFT from the Hermitian half spectrum Y_0..Y_M; its output packs
// x[2n] + i x[2n+1] with x[t] = sum over the full Hermitian spectrum of Y_k exp(+2 pi i k t / 2M).
template <typename R>
DDT_HD Cx<R> pack_bin(const Cx<R>* Y, int M, int k, const Cx<R>* tw) {
  const Cx<R> yk = Y[k];
  const Cx<R> ym = conj(Y[M - k]);
  return (yk + ym) + times_i<1>(conj(tw[k]) * (yk - ym));
}

// Coefficient c of Re(sum_{k<F} c_k exp(+2 pi i k t / H)) as entry of the Hermitian half spectrum.
template <typename R>
DDT_HD Cx<R> hermitian_entry(Cx<R> c, bool edge) {
  return edge ? Cx<R>{c.re, R(0)} : scale(c, R(0.5));
}

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
