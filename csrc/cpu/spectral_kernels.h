// SIMD kernels of the spectral losses, one series per vector lane.
//
// A block holds `lanes` series of one length H processed together: every step of the FFT works on
// whole vectors, so the vector width is used fully for any H. Buffers are aligned to 64 bytes and
// laid out [index][lanes] (real arrays) or [index][2][lanes] (complex arrays, re then im); padding
// lanes hold zeros. `work` holds work_size(plan, lanes) values. The kernels are compiled once per
// instruction set (spectral_kernels.cpp) and kernels<T>() picks the one torch itself runs with
// (at::get_cpu_capability(): AVX512, AVX2 or DEFAULT; ATEN_CPU_CAPABILITY overrides it).
#pragma once

#include <cstdint>

#include "cpu/fft.h"

namespace ddtime::spectral {

template <class T>
struct Kernels {
  int64_t lanes;
  const char* isa;
  // d: [H] series -> rows = alpha / F * sum_{k<F} |D_k| + (1 - alpha) / H * sum_t d_t^2 ([1]), with
  // D = rfft(d); grad (nullable): [H], d rows / d d. spectrum: [F] complex scratch.
  void (*value)(const fft::RealPlan<T>& plan, const T* d, T alpha, T* rows, T* grad, T* spectrum, T* work);
  // d: [H] -> modulus: [F] = |D_k|, phase: [F] complex = D_k / |D_k| (0 where D_k == 0).
  void (*bins)(const fft::RealPlan<T>& plan, const T* d, T* modulus, T* phase, T* work);
  // grad_modulus: [F], phase: [F] complex -> grad: [H] = Re sum_{k<F} g_k u_k e^{+2 pi i k t / H}.
  // spectrum: [F] complex scratch.
  void (*bins_backward)(const fft::RealPlan<T>& plan, const T* grad_modulus, const T* phase, T* grad,
                        T* spectrum, T* work);
  // count <= lanes consecutive rows of `length` values (row r at x + r * length), as x - y (x when y
  // is null) -> out: [length] (lanes beyond count are zero).
  void (*load_rows)(const T* x, const T* y, int64_t length, int64_t count, T* out);
  // in: [length] -> count consecutive rows of `length` values at out.
  void (*store_rows)(const T* in, int64_t length, int64_t count, T* out);
};

template <class T>
int64_t work_size(const fft::RealPlan<T>& plan, int64_t lanes) {
  return 4 * plan.complex.buffer_size() * lanes;
}

// The kernels for T = float or double, chosen on first use.
template <class T>
const Kernels<T>& kernels();

}  // namespace ddtime::spectral
