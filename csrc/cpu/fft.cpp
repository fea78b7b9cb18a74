// Construction and caching of FFT plans (see fft.h). Tables are computed in long double and rounded
// once to the plan's precision.
#include "cpu/fft.h"

#include <cmath>
#include <complex>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace ddtime::fft {
namespace {

using Complex = std::complex<long double>;

constexpr long double kTwoPi = 6.283185307179586476925286766559005768L;

// exp(-2 pi i num / den) with num reduced modulo den first, so large products stay exact.
Complex unit_root(int64_t num, int64_t den) {
  num %= den;
  if (num < 0) num += den;
  const long double angle = -kTwoPi * static_cast<long double>(num) / static_cast<long double>(den);
  return {std::cos(angle), std::sin(angle)};
}

template <class T>
void push(std::vector<T>& table, Complex z) {
  table.push_back(static_cast<T>(z.real()));
  table.push_back(static_cast<T>(z.imag()));
}

// In-place radix-2 transform of a power-of-two length, in long double (used for table building).
void transform_pow2(std::vector<Complex>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  for (int64_t i = 1, j = 0; i < n; ++i) {
    int64_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) std::swap(x[i], x[j]);
  }
  for (int64_t len = 2; len <= n; len <<= 1) {
    for (int64_t k = 0; k < len / 2; ++k) {
      const Complex w = unit_root(k, len);
      for (int64_t start = 0; start < n; start += len) {
        const Complex a = x[start + k];
        const Complex b = x[start + k + len / 2] * w;
        x[start + k] = a + b;
        x[start + k + len / 2] = a - b;
      }
    }
  }
}

// The radices of a direct plan of `size` points in pass order (4s, a 2, then odd primes), or an
// empty list when `size` has a prime factor above kMaxDirectRadix (and for size 1).
std::vector<int> factorize(int64_t size) {
  std::vector<int> radices;
  int64_t rest = size;
  while (rest % 4 == 0) {
    radices.push_back(4);
    rest /= 4;
  }
  if (rest % 2 == 0) {
    radices.push_back(2);
    rest /= 2;
  }
  for (int p = 3; p <= kMaxDirectRadix && rest > 1; p += 2) {
    while (rest % p == 0) {
      radices.push_back(p);
      rest /= p;
    }
  }
  if (rest > 1) radices.clear();
  return radices;
}

template <class T>
void build_direct(ComplexPlan<T>& plan, const std::vector<int>& radices) {
  int64_t span = 1;
  for (int radix : radices) {
    Pass pass{radix, span, static_cast<int64_t>(plan.table.size() / 2), -1};
    if (span > 1) {
      for (int64_t j = 0; j < span; ++j) {
        for (int r = 1; r < radix; ++r) push(plan.table, unit_root(j * r, span * radix));
      }
    }
    if (radix > 5) {
      pass.roots = static_cast<int64_t>(plan.table.size() / 2);
      for (int q = 0; q < radix; ++q) push(plan.table, unit_root(q, radix));
    }
    plan.passes.push_back(pass);
    span *= radix;
  }
}

template <class T>
void build(ComplexPlan<T>& plan, int64_t size);

template <class T>
void build_bluestein(ComplexPlan<T>& plan) {
  const int64_t n = plan.size;
  int64_t conv = 1;
  while (conv < 2 * n - 1) conv <<= 1;
  auto conv_plan = std::make_unique<ComplexPlan<T>>();
  build(*conv_plan, conv);
  plan.conv = std::move(conv_plan);

  // chirp_k = exp(-pi i k^2 / n) = unit_root(k^2 mod 2n, 2n)
  std::vector<Complex> chirp(n);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t sq = static_cast<int64_t>((static_cast<unsigned __int128>(k) * k) % (2 * n));
    chirp[k] = unit_root(sq, 2 * n);
    push(plan.chirp, chirp[k]);
  }
  std::vector<Complex> kernel(conv, Complex(0, 0));
  for (int64_t k = 0; k < n; ++k) {
    kernel[k] = std::conj(chirp[k]);
    if (k > 0) kernel[conv - k] = std::conj(chirp[k]);
  }
  transform_pow2(kernel);
  for (const Complex& z : kernel) push(plan.chirp_kernel, z / static_cast<long double>(conv));
}

template <class T>
void build(ComplexPlan<T>& plan, int64_t size) {
  plan.size = size;
  const std::vector<int> radices = factorize(size);
  if (size > 1 && radices.empty()) {
    build_bluestein(plan);
  } else {
    build_direct(plan, radices);
  }
}

template <class T>
std::shared_ptr<const RealPlan<T>> make_real_plan(int64_t length) {
  auto plan = std::make_shared<RealPlan<T>>();
  plan->length = length;
  plan->bins = length / 2 + 1;
  build(plan->complex, plan->packed() ? length / 2 : length);
  if (plan->packed()) {
    for (int64_t k = 0; k <= length / 2; ++k) push(plan->unpack, unit_root(k, length));
  }
  return plan;
}

}  // namespace

template <class T>
std::shared_ptr<const RealPlan<T>> real_plan(int64_t length) {
  if (length < 1) throw std::invalid_argument("ddtime fft: length must be >= 1, got " + std::to_string(length));
  // Plans are immutable once built; the map only hands out shared ownership. Bounded: a workload
  // with very many distinct lengths rebuilds instead of growing without limit.
  static std::mutex mutex;
  static std::unordered_map<int64_t, std::shared_ptr<const RealPlan<T>>> cache;
  constexpr size_t kMaxCached = 64;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(length);
  if (found != cache.end()) return found->second;
  if (cache.size() >= kMaxCached) cache.clear();
  auto plan = make_real_plan<T>(length);
  cache.emplace(length, plan);
  return plan;
}

template std::shared_ptr<const RealPlan<float>> real_plan<float>(int64_t);
template std::shared_ptr<const RealPlan<double>> real_plan<double>(int64_t);

}  // namespace ddtime::fft
