// FFT plans: factorisation, twiddle tables and Bluestein tables for one transform length.
//
// A plan is plain data, built once per (length, precision) and shared read-only by every thread
// (real_plan() caches them). The transforms that run a plan live in spectral_kernels_impl.h.
//
// Conventions: forward transforms only, X_k = sum_n x_n exp(-2 pi i k n / n_total); inverse
// transforms are taken as conj(FFT(conj(.))). Complex numbers in tables are (re, im) pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace ddtime::fft {

// Largest prime handled by a direct butterfly; a length with a larger prime factor uses Bluestein.
constexpr int kMaxDirectRadix = 61;

// One self-sorting (Stockham) pass: size / radix butterflies of `radix` points. `span` is the
// product of the radices of the earlier passes. Twiddles: [span][radix - 1] complex numbers
// exp(-2 pi i j r / (span * radix)), j < span, 1 <= r < radix (none when span == 1). A radix other
// than 2, 3, 4, 5 also has the radix-th roots of unity exp(-2 pi i q / radix), q < radix.
struct Pass {
  int radix;
  int64_t span;
  int64_t twiddles;  // offset in ComplexPlan::table, in complex numbers
  int64_t roots;     // offset in ComplexPlan::table (generic radix only)
};

template <class T>
struct ComplexPlan {
  int64_t size = 1;
  std::vector<Pass> passes;  // empty for size 1, and for a Bluestein plan
  std::vector<T> table;      // twiddles and roots of all passes
  // Bluestein (size has a prime factor > kMaxDirectRadix): X = chirp * conv(x * chirp, conj chirp),
  // the circular convolution taken with a power-of-two plan `conv`.
  std::unique_ptr<const ComplexPlan<T>> conv;
  std::vector<T> chirp;         // [size]: exp(-pi i k^2 / size)
  std::vector<T> chirp_kernel;  // [conv->size]: FFT(conj chirp, wrapped circularly) / conv->size

  // Complex elements that each of the two work buffers of a transform must hold.
  int64_t buffer_size() const { return conv ? conv->size : size; }
};

// Real transform of length H (F = H / 2 + 1 bins). Even H packs the real series into a complex
// series of H / 2 points (x[2m] + i x[2m+1]); odd H runs a complex transform of H points.
template <class T>
struct RealPlan {
  int64_t length = 1;  // H
  int64_t bins = 1;    // F
  ComplexPlan<T> complex;
  std::vector<T> unpack;  // even H: exp(-2 pi i k / H), k = 0 .. H / 2

  bool packed() const { return length % 2 == 0; }
};

// Thread-safe cache of real plans (T = float or double); length >= 1.
template <class T>
std::shared_ptr<const RealPlan<T>> real_plan(int64_t length);

}  // namespace ddtime::fft
