// Compiles spectral_kernels_impl.h for each x86 instruction set torch dispatches on (DEFAULT, AVX2,
// AVX512) without raising the extension's global compile flags, and picks the one matching
// at::get_cpu_capability() at first use. Other architectures get the portable build only.
#include "cpu/spectral_kernels.h"

#include <ATen/Version.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC's AVX-512 intrinsics read a deliberately undefined register (_mm512_undefined_ps).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ddtime::spectral {

namespace baseline {
#define DDTIME_VECTOR_BYTES 16
#include "cpu/spectral_kernels_impl.h"
#undef DDTIME_VECTOR_BYTES
}  // namespace baseline

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define DDTIME_VECTOR_BYTES 32
#include "cpu/spectral_kernels_impl.h"
#undef DDTIME_VECTOR_BYTES
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
namespace avx512 {
#define DDTIME_VECTOR_BYTES 64
#include "cpu/spectral_kernels_impl.h"
#undef DDTIME_VECTOR_BYTES
}  // namespace avx512
#pragma GCC pop_options
#endif

template <class T>
const Kernels<T>& kernels() {
  static const Kernels<T> chosen = [] {
#if defined(__x86_64__)
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") return avx512::Spectral<T>::table("avx512");
    if (capability == "AVX2") return avx2::Spectral<T>::table("avx2");
#endif
    return baseline::Spectral<T>::table("baseline");
  }();
  return chosen;
}

template const Kernels<float>& kernels<float>();
template const Kernels<double>& kernels<double>();

}  // namespace ddtime::spectral
