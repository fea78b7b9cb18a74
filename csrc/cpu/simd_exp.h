// exp written without branches so that loops calling it vectorize, and the attribute that compiles
// such loops for AVX2 and AVX-512 besides the baseline ISA (picked at load time).
//
// std::exp does not vectorize without -ffast-math and libmvec, and a scalar expf costs more than
// the rest of a softmax row; the float version below follows Cephes' expf (Cody-Waite range
// reduction by ln 2, degree-6 polynomial, about 1 ulp), with std::exp's edge cases: subnormal
// results, +inf above ~88.72, 0 for -inf and below ~-104, NaN in -> NaN out.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DDTIME_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DDTIME_SIMD_CLONES
#endif

namespace ddtime::cpu {

[[gnu::always_inline]] inline float simd_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 9 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: (t + kRound) - kRound rounds t to an integer
  float n = x * kLog2e;
  n = n < -150.0f ? -150.0f : n;
  n = n > 128.0f ? 128.0f : n;
  n = (n + kRound) - kRound;
  n = (x == x) ? n : 0.0f;  // NaN: keep the integer conversion defined; r carries the NaN
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  // 2^n as two normal factors, so that subnormal results and overflow to inf come out right.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  const float e = y * std::bit_cast<float>((n1 + 127) << 23) * std::bit_cast<float>((n2 + 127) << 23);
  return x < -104.0f ? 0.0f : e;
}

// float64 kernels are the accuracy path: full-precision std::exp.
inline double simd_exp(double x) { return std::exp(x); }

}  // namespace ddtime::cpu
