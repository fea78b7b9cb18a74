// The device FFT of the value-loss kernels: complex arithmetic, small DFT butterflies, mixed-radix
// Stockham stages (8, 4, 2, 3, 5, 7 and a generic prime stage) on block-wide buffers, their plans,
// and the packing of a length-2M real FFT into an M-point complex one. Written against the
// execution context of kernel_common.cuh, like the block programs that call it.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_common.cuh"

namespace ddtime::kernels::detail {

constexpr int kMaxStages = 32;

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

inline FftPlan make_plan(int n) {
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

}  // namespace ddtime::kernels::detail
