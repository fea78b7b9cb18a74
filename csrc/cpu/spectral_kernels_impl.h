// Body of the lane-parallel spectral kernels (interface: spectral_kernels.h).
//
// No include guard on purpose: spectral_kernels.cpp includes this file once per instruction set,
// inside its own namespace, with DDTIME_VECTOR_BYTES set to that set's register width and the
// matching `#pragma GCC target`. Only self-contained code belongs here (every standard and
// intrinsics header is included by spectral_kernels.cpp before the target pragma).
//
// Data are GCC vectors of DDTIME_VECTOR_BYTES bytes: one vector = one time step (or bin) of every
// series in the block. The complex FFT is a self-sorting mixed-radix Stockham transform
// (radix 2, 3, 4, 5 butterflies, a generic odd-prime butterfly, Bluestein above kMaxDirectRadix).

typedef float VecF __attribute__((vector_size(DDTIME_VECTOR_BYTES)));
typedef double VecD __attribute__((vector_size(DDTIME_VECTOR_BYTES)));

inline VecF vsqrt(VecF x) {
#if defined(__x86_64__) && DDTIME_VECTOR_BYTES == 64
  return (VecF)_mm512_sqrt_ps((__m512)x);
#elif defined(__x86_64__) && DDTIME_VECTOR_BYTES == 32
  return (VecF)_mm256_sqrt_ps((__m256)x);
#elif defined(__x86_64__) && DDTIME_VECTOR_BYTES == 16
  return (VecF)_mm_sqrt_ps((__m128)x);
#else
  for (int l = 0; l < int(sizeof(VecF) / sizeof(float)); ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

inline VecD vsqrt(VecD x) {
#if defined(__x86_64__) && DDTIME_VECTOR_BYTES == 64
  return (VecD)_mm512_sqrt_pd((__m512d)x);
#elif defined(__x86_64__) && DDTIME_VECTOR_BYTES == 32
  return (VecD)_mm256_sqrt_pd((__m256d)x);
#elif defined(__x86_64__) && DDTIME_VECTOR_BYTES == 16
  return (VecD)_mm_sqrt_pd((__m128d)x);
#else
  for (int l = 0; l < int(sizeof(VecD) / sizeof(double)); ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

typedef int32_t IndexF __attribute__((vector_size(DDTIME_VECTOR_BYTES)));
typedef int64_t IndexD __attribute__((vector_size(DDTIME_VECTOR_BYTES)));

template <class T>
struct LaneVec;
template <>
struct LaneVec<float> {
  using type = VecF;
  using index = IndexF;
};
template <>
struct LaneVec<double> {
  using type = VecD;
  using index = IndexD;
};

// A complex number per lane.
template <class V>
struct Cx {
  V re, im;
};

template <class V>
inline Cx<V> operator+(Cx<V> a, Cx<V> b) {
  return {a.re + b.re, a.im + b.im};
}
template <class V>
inline Cx<V> operator-(Cx<V> a, Cx<V> b) {
  return {a.re - b.re, a.im - b.im};
}
template <class V>
inline Cx<V> conj(Cx<V> a) {
  return {a.re, -a.im};
}
template <class V>
inline Cx<V> mul_i(Cx<V> a) {  // i * a
  return {-a.im, a.re};
}
template <class V>
inline Cx<V> mul_neg_i(Cx<V> a) {  // -i * a
  return {a.im, -a.re};
}
template <class V, class S>
inline Cx<V> scale(Cx<V> a, S s) {
  return {a.re * s, a.im * s};
}
// a * (wr + i wi), the same scalar twiddle for every lane
template <class V, class S>
inline Cx<V> cmul(Cx<V> a, S wr, S wi) {
  return {a.re * wr - a.im * wi, a.re * wi + a.im * wr};
}

template <class T>
struct Spectral {
  using V = typename LaneVec<T>::type;
  using C = Cx<V>;
  static constexpr int kLanes = int(sizeof(V) / sizeof(T));

  using Index = typename LaneVec<T>::index;

  static C load(const V* p, int64_t e) { return {p[2 * e], p[2 * e + 1]}; }
  static void store(V* p, int64_t e, C z) {
    p[2 * e] = z.re;
    p[2 * e + 1] = z.im;
  }

  // ---- butterflies (forward, in place) ----------------------------------------------------
  template <int P>
  static void butterfly(C* a) {
    if constexpr (P == 2) {
      const C t = a[0];
      a[0] = t + a[1];
      a[1] = t - a[1];
    } else if constexpr (P == 3) {
      const T sin60 = T(0.866025403784438646763723170752936183L);
      const C s = a[1] + a[2], r = scale(mul_neg_i(a[1] - a[2]), sin60);
      const C m = a[0] - scale(s, T(0.5));
      a[0] = a[0] + s;
      a[1] = m + r;
      a[2] = m - r;
    } else if constexpr (P == 4) {
      const C t0 = a[0] + a[2], t1 = a[0] - a[2], t2 = a[1] + a[3], t3 = mul_neg_i(a[1] - a[3]);
      a[0] = t0 + t2;
      a[2] = t0 - t2;
      a[1] = t1 + t3;
      a[3] = t1 - t3;
    } else {
      static_assert(P == 5, "radix 2, 3, 4 or 5");
      const T c1 = T(0.309016994374947424102293417182819059L), c2 = T(-0.809016994374947424102293417182819059L);
      const T s1 = T(0.951056516295153572116439333379382143L), s2 = T(0.587785252292473129168705954639072769L);
      const C b1 = a[1] + a[4], b2 = a[2] + a[3], d1 = a[1] - a[4], d2 = a[2] - a[3];
      const C p1 = a[0] + scale(b1, c1) + scale(b2, c2), q1 = mul_neg_i(scale(d1, s1) + scale(d2, s2));
      const C p2 = a[0] + scale(b1, c2) + scale(b2, c1), q2 = mul_neg_i(scale(d1, s2) - scale(d2, s1));
      a[0] = a[0] + b1 + b2;
      a[1] = p1 + q1;
      a[4] = p1 - q1;
      a[2] = p2 + q2;
      a[3] = p2 - q2;
    }
  }

  // ---- Stockham passes --------------------------------------------------------------------
  // Butterfly j (< size / P) reads in[j + r * size / P], r < P, twiddled by
  // exp(-2 pi i (j mod span) r / (span * P)), and writes out[(j / span) * span * P + j mod span + r * span].
  template <int P>
  static void pass(const fft::Pass& ps, const T* table, int64_t size, const V* __restrict in,
                   V* __restrict out) {
    const int64_t m = size / P, span = ps.span, groups = m / span;
    const T* tw = table + 2 * ps.twiddles;
    for (int64_t j0 = 0; j0 < span; ++j0) {
      const T* w = tw + 2 * (P - 1) * j0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j = g * span + j0;
        C a[P];
        for (int r = 0; r < P; ++r) a[r] = load(in, j + r * m);
        if (span > 1) {
          for (int r = 1; r < P; ++r) a[r] = cmul(a[r], w[2 * (r - 1)], w[2 * (r - 1) + 1]);
        }
        butterfly<P>(a);
        const int64_t o = g * span * P + j0;
        for (int r = 0; r < P; ++r) store(out, o + r * span, a[r]);
      }
    }
  }

  // Odd radix p: y_0 = sum a_r; with b_r = a_r + a_{p-r}, e_r = a_r - a_{p-r} (1 <= r <= p/2),
  // y_k = a_0 + sum_r cos(2 pi r k / p) b_r - i sum_r sin(2 pi r k / p) e_r and y_{p-k} = conj pair.
  static void pass_generic(const fft::Pass& ps, const T* table, int64_t size, const V* __restrict in,
                           V* __restrict out) {
    const int p = ps.radix, half = (p - 1) / 2;
    const int64_t m = size / p, span = ps.span, groups = m / span;
    const T* tw = table + 2 * ps.twiddles;
    const T* roots = table + 2 * ps.roots;
    C a[fft::kMaxDirectRadix], b[fft::kMaxDirectRadix / 2 + 1], e[fft::kMaxDirectRadix / 2 + 1];
    for (int64_t j0 = 0; j0 < span; ++j0) {
      const T* w = tw + 2 * (p - 1) * j0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j = g * span + j0;
        for (int r = 0; r < p; ++r) a[r] = load(in, j + r * m);
        if (span > 1) {
          for (int r = 1; r < p; ++r) a[r] = cmul(a[r], w[2 * (r - 1)], w[2 * (r - 1) + 1]);
        }
        C y0 = a[0];
        for (int r = 1; r <= half; ++r) {
          b[r] = a[r] + a[p - r];
          e[r] = a[r] - a[p - r];
          y0 = y0 + b[r];
        }
        const int64_t o = g * span * p + j0;
        store(out, o, y0);
        for (int k = 1; k <= half; ++k) {
          C s = a[0], t{V{}, V{}};
          for (int r = 1, q = k; r <= half; ++r, q = (q + k) % p) {
            const T c = roots[2 * q], sn = -roots[2 * q + 1];
            s.re += c * b[r].re;
            s.im += c * b[r].im;
            t.re += sn * e[r].re;
            t.im += sn * e[r].im;
          }
          store(out, o + k * span, C{s.re + t.im, s.im - t.re});
          store(out, o + (p - k) * span, C{s.re - t.im, s.im + t.re});
        }
      }
    }
  }

  static void run_pass(const fft::Pass& ps, const T* table, int64_t size, const V* in, V* out) {
    switch (ps.radix) {
      case 2: return pass<2>(ps, table, size, in, out);
      case 3: return pass<3>(ps, table, size, in, out);
      case 4: return pass<4>(ps, table, size, in, out);
      case 5: return pass<5>(ps, table, size, in, out);
      default: return pass_generic(ps, table, size, in, out);
    }
  }

  // FFT of src ([size] complex). a and b hold plan.buffer_size() elements each; src may be b but
  // not a. Returns the buffer that holds the result (src itself for size 1).
  static const V* transform(const fft::ComplexPlan<T>& plan, const V* src, V* a, V* b) {
    if (plan.conv) return bluestein(plan, src, a, b);
    const V* cur = src;
    V* dst = a;
    for (const fft::Pass& ps : plan.passes) {
      run_pass(ps, plan.table.data(), plan.size, cur, dst);
      cur = dst;
      dst = dst == a ? b : a;
    }
    return cur;
  }

  static const V* bluestein(const fft::ComplexPlan<T>& plan, const V* src, V* a, V* b) {
    const int64_t n = plan.size, len = plan.conv->size;
    const T* chirp = plan.chirp.data();
    const T* kernel = plan.chirp_kernel.data();
    for (int64_t k = 0; k < n; ++k) store(a, k, cmul(load(src, k), chirp[2 * k], chirp[2 * k + 1]));
    for (int64_t k = n; k < len; ++k) store(a, k, C{V{}, V{}});
    V* r = const_cast<V*>(transform(*plan.conv, a, b, a));
    // inverse transform of (spectrum * kernel) as conj(FFT(conj(.))); 1 / len is in the kernel
    for (int64_t k = 0; k < len; ++k) store(r, k, conj(cmul(load(r, k), kernel[2 * k], kernel[2 * k + 1])));
    V* r2 = const_cast<V*>(transform(*plan.conv, r, r == a ? b : a, r));
    for (int64_t k = 0; k < n; ++k) store(r2, k, cmul(conj(load(r2, k)), chirp[2 * k], chirp[2 * k + 1]));
    return r2;
  }

  // ---- real transforms --------------------------------------------------------------------
  // spectrum[k] = sum_t x_t exp(-2 pi i k t / H), k < F. x: [H] real.
  static void rfft(const fft::RealPlan<T>& plan, const V* x, V* spectrum, V* a, V* b) {
    const int64_t H = plan.length;
    if (plan.packed()) {
      // z_m = x_{2m} + i x_{2m+1} is x itself read as complex; D_k = E_k + exp(-2 pi i k / H) O_k
      // with E_k = (Z_k + conj Z_{M-k}) / 2, O_k = -i (Z_k - conj Z_{M-k}) / 2.
      const int64_t M = H / 2;
      const V* z = transform(plan.complex, x, a, b);
      const T* tw = plan.unpack.data();
      for (int64_t k = 0; k <= M; ++k) {
        const C zk = load(z, k == M ? 0 : k), zc = conj(load(z, k == 0 ? 0 : M - k));
        const C o = cmul(mul_neg_i(zk - zc), tw[2 * k], tw[2 * k + 1]);
        store(spectrum, k, scale(zk + zc + o, T(0.5)));
      }
    } else {
      for (int64_t t = 0; t < H; ++t) store(b, t, C{x[t], V{}});
      const V* z = transform(plan.complex, b, a, b);
      for (int64_t k = 0; k < plan.bins; ++k) store(spectrum, k, load(z, k));
    }
  }

  // out_t = Re sum_{k<F} spectrum_k exp(+2 pi i k t / H), t < H: the real inverse transform of the
  // Hermitian spectrum W_0 = Re s_0, W_{H/2} = Re s_{H/2} (even H), W_k = s_k / 2 otherwise.
  static void synthesize(const fft::RealPlan<T>& plan, const V* spectrum, V* out, V* a, V* b) {
    const int64_t H = plan.length, M = H / 2;
    auto weight = [&](int64_t k) {
      const C s = load(spectrum, k);
      return (k == 0 || (plan.packed() && k == M)) ? C{s.re, V{}} : scale(s, T(0.5));
    };
    if (plan.packed()) {
      // x_{2m} + i x_{2m+1} = IFFT_M(Z)_m with Z_k = (W_k + conj W_{M-k}) + i exp(2 pi i k / H) (W_k - conj W_{M-k});
      // taken as conj(FFT(conj Z)).
      const T* tw = plan.unpack.data();
      for (int64_t k = 0; k < M; ++k) {
        const C wk = weight(k), wc = conj(weight(M - k));
        const C z = (wk + wc) + mul_i(cmul(wk - wc, tw[2 * k], -tw[2 * k + 1]));
        store(a, k, conj(z));
      }
      const V* r = transform(plan.complex, a, b, a);
      for (int64_t m = 0; m < M; ++m) {
        out[2 * m] = r[2 * m];
        out[2 * m + 1] = -r[2 * m + 1];
      }
    } else {
      for (int64_t k = 0; k < H; ++k) store(a, k, k < plan.bins ? conj(weight(k)) : weight(H - k));
      const V* r = transform(plan.complex, a, b, a);
      for (int64_t t = 0; t < H; ++t) out[t] = r[2 * t];
    }
  }

  // ---- moduli and unit phases of a spectrum -----------------------------------------------
  // Replaces spectrum[k] by spectrum[k] * coef / |spectrum[k]| (0 where the bin is 0) and returns
  // the per-lane sum of the moduli (written to modulus[k] when given). Returns false when some
  // |D|^2 under- or overflowed: the caller then redoes the bins with bins_exact().
  static bool bins_fast(V* spectrum, int64_t F, T coef, V* modulus, V& sum) {
    using Mask = decltype(V{} < V{});
    const T tiny = std::numeric_limits<T>::min(), huge = std::numeric_limits<T>::max();
    Mask bad{};
    V total{}, chunk{};
    for (int64_t k = 0; k < F; ++k) {
      const C s = load(spectrum, k);
      const V m2 = s.re * s.re + s.im * s.im;
      const V mod = vsqrt(m2);
      bad |= (m2 > huge) | ((m2 < tiny) & (m2 > T(0)));
      chunk += mod;
      if ((k & 31) == 31) {
        total += chunk;
        chunk = V{};
      }
      if (modulus) modulus[k] = mod;
      const V inv = mod > T(0) ? coef / mod : V{};
      store(spectrum, k, scale(s, inv));
    }
    sum = total + chunk;
    for (int l = 0; l < kLanes; ++l) {
      if (bad[l]) return false;
    }
    return true;
  }

  // bins_fast with |D| from std::hypot in double: accurate for any finite spectrum.
  static void bins_exact(V* spectrum, int64_t F, T coef, V* modulus, V& sum) {
    sum = V{};
    for (int l = 0; l < kLanes; ++l) {
      double total = 0;
      for (int64_t k = 0; k < F; ++k) {
        const double re = spectrum[2 * k][l], im = spectrum[2 * k + 1][l];
        const double mod = std::hypot(re, im);
        total += mod;
        if (modulus) modulus[k][l] = T(mod);
        const double inv = mod > 0 ? double(coef) / mod : 0.0;
        spectrum[2 * k][l] = T(re * inv);
        spectrum[2 * k + 1][l] = T(im * inv);
      }
      sum[l] = T(total);
    }
  }

  static void unit_bins(const fft::RealPlan<T>& plan, const V* d, V* spectrum, T coef, V* modulus, V& sum,
                        V* a, V* b) {
    rfft(plan, d, spectrum, a, b);
    if (!bins_fast(spectrum, plan.bins, coef, modulus, sum)) {
      rfft(plan, d, spectrum, a, b);
      bins_exact(spectrum, plan.bins, coef, modulus, sum);
    }
  }

  // ---- the kernels of spectral_kernels.h ---------------------------------------------------
  static void value(const fft::RealPlan<T>& plan, const T* d_, T alpha, T* rows_, T* grad_, T* spectrum_,
                    T* work_) {
    const V* d = reinterpret_cast<const V*>(d_);
    V* grad = reinterpret_cast<V*>(grad_);
    V* spectrum = reinterpret_cast<V*>(spectrum_);
    V* a = reinterpret_cast<V*>(work_);
    V* b = a + 2 * plan.complex.buffer_size();
    const int64_t H = plan.length, F = plan.bins;

    V squares{}, chunk{};
    for (int64_t t = 0; t < H; ++t) {
      chunk += d[t] * d[t];
      if ((t & 31) == 31) {
        squares += chunk;
        chunk = V{};
      }
    }
    squares += chunk;

    const T freq_weight = alpha / T(F), mse_weight = (T(1) - alpha) / T(H);
    V moduli{};
    if (alpha != T(0)) unit_bins(plan, d, spectrum, freq_weight, nullptr, moduli, a, b);
    *reinterpret_cast<V*>(rows_) = freq_weight * moduli + mse_weight * squares;

    if (grad) {
      if (alpha != T(0)) {
        synthesize(plan, spectrum, grad, a, b);
      } else {
        for (int64_t t = 0; t < H; ++t) grad[t] = V{};
      }
      const T c = T(2) * mse_weight;
      for (int64_t t = 0; t < H; ++t) grad[t] += c * d[t];
    }
  }

  static void bins(const fft::RealPlan<T>& plan, const T* d_, T* modulus_, T* phase_, T* work_) {
    V* a = reinterpret_cast<V*>(work_);
    V* b = a + 2 * plan.complex.buffer_size();
    V sum;
    unit_bins(plan, reinterpret_cast<const V*>(d_), reinterpret_cast<V*>(phase_), T(1),
              reinterpret_cast<V*>(modulus_), sum, a, b);
  }

  static void bins_backward(const fft::RealPlan<T>& plan, const T* grad_modulus_, const T* phase_, T* grad_,
                            T* spectrum_, T* work_) {
    const V* g = reinterpret_cast<const V*>(grad_modulus_);
    const V* phase = reinterpret_cast<const V*>(phase_);
    V* spectrum = reinterpret_cast<V*>(spectrum_);
    V* a = reinterpret_cast<V*>(work_);
    V* b = a + 2 * plan.complex.buffer_size();
    for (int64_t k = 0; k < plan.bins; ++k) store(spectrum, k, scale(load(phase, k), g[k]));
    synthesize(plan, spectrum, reinterpret_cast<V*>(grad_), a, b);
  }

  // ---- rows <-> lanes ------------------------------------------------------------------------
  // In-register transpose of kLanes x kLanes values: each stage b swaps bit b of the row index
  // with bit b of the column index (two-input shuffles with constant masks).
  template <int B>
  static void transpose_stage(V* r) {
    Index lo, hi;
    for (int j = 0; j < kLanes; ++j) {
      lo[j] = (j & B) ? kLanes + j - B : j;
      hi[j] = (j & B) ? kLanes + j : j + B;
    }
    for (int i = 0; i < kLanes; ++i) {
      if (i & B) continue;
      const V a = r[i], c = r[i + B];
      r[i] = __builtin_shuffle(a, c, lo);
      r[i + B] = __builtin_shuffle(a, c, hi);
    }
  }

  static void transpose(V* r) {
    if constexpr (kLanes >= 16) transpose_stage<8>(r);
    if constexpr (kLanes >= 8) transpose_stage<4>(r);
    if constexpr (kLanes >= 4) transpose_stage<2>(r);
    transpose_stage<1>(r);
  }

  static V load_unaligned(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }

  static void load_rows(const T* x, const T* y, int64_t length, int64_t count, T* out_) {
    V* out = reinterpret_cast<V*>(out_);
    int64_t t0 = 0;
    if (count == kLanes) {
      for (; t0 + kLanes <= length; t0 += kLanes) {
        V r[kLanes];
        for (int l = 0; l < kLanes; ++l) {
          r[l] = load_unaligned(x + l * length + t0);
          if (y) r[l] -= load_unaligned(y + l * length + t0);
        }
        transpose(r);
        for (int j = 0; j < kLanes; ++j) out[t0 + j] = r[j];
      }
    }
    for (int64_t t = t0; t < length; ++t) {
      V v{};
      for (int64_t l = 0; l < count; ++l) v[l] = y ? x[l * length + t] - y[l * length + t] : x[l * length + t];
      out[t] = v;
    }
  }

  static void store_rows(const T* in_, int64_t length, int64_t count, T* out) {
    const V* in = reinterpret_cast<const V*>(in_);
    int64_t t0 = 0;
    if (count == kLanes) {
      for (; t0 + kLanes <= length; t0 += kLanes) {
        V r[kLanes];
        for (int j = 0; j < kLanes; ++j) r[j] = in[t0 + j];
        transpose(r);
        for (int l = 0; l < kLanes; ++l) std::memcpy(out + l * length + t0, &r[l], sizeof(V));
      }
    }
    for (int64_t t = t0; t < length; ++t) {
      for (int64_t l = 0; l < count; ++l) out[l * length + t] = in[t][l];
    }
  }

  static Kernels<T> table(const char* isa) {
    return {kLanes, isa, &value, &bins, &bins_backward, &load_rows, &store_rows};
  }
};
