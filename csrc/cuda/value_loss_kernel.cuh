// Launchers of the value-loss / frequency-alignment CUDA kernels (plain CUDA C++, no torch headers).
//
// Every tensor is described as a strided view [outer, length, inner] with the time (or frequency)
// axis in the middle: [B, N, H] time-contiguous is {outer=B*N, length=H, inner=1}, [B, H, N] is
// {outer=B, length=H, inner=N}. Outputs are written contiguous in the same [outer, ., inner] order.
// One series (outer index o, inner index i) is processed by one thread block (several series per
// block for short series): it is read once, its real FFT is taken on chip by a mixed-radix
// Stockham FFT (radices 8, 4, 2, 3, 5, 7 and a generic prime stage, so every length works), the
// per-series reductions use a fixed warp-shuffle tree and the gradient is written in the same pass.
// No atomics: every result is independent of block scheduling (bitwise reproducible).
// Series too long for shared memory run the same program on a global-memory workspace (see
// value_loss_workspace_bytes); only then does any intermediate leave the chip.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernel_types.h"  // opmath_t

namespace ddtime::kernels {

// Element strides of a tensor viewed as [outer, length, inner].
struct Strides3 {
  int64_t outer, length, inner;
};

// outer * inner series of `length` samples each (length = H, the time axis).
struct SeriesShape {
  int64_t outer, length, inner;
};

// Bytes of global workspace the launchers below need for this shape and accumulation type
// (sizeof(opmath_t<T>)); 0 when every series fits in shared memory, which is the case for all
// practical horizons (H up to several thousand). Uses the current device's limits.
cudaError_t value_loss_workspace_bytes(SeriesShape shape, int opmath_size, size_t* bytes);

// rows[o, i] = alpha/F sum_k |rfft(d)[k]| + (1-alpha)/H sum_t d[t]^2, d = input - target (rows:
// contiguous [outer, inner]). grad (nullable; contiguous [outer, H, inner]) = d rows / d input.
template <typename T>
cudaError_t launch_value_loss_fused(const T* input, Strides3 input_strides, const T* target,
                                    Strides3 target_strides, SeriesShape shape, double alpha,
                                    opmath_t<T>* rows, T* grad, void* workspace, cudaStream_t stream);

// modulus: contiguous [outer, F, inner] = |rfft(d)|; phase: contiguous [outer, F, inner, 2] = unit
// (cos, sin) of rfft(d), (0, 0) where a bin is exactly zero.
template <typename T>
cudaError_t launch_frequency_alignment_bins(const T* input, Strides3 input_strides, const T* target,
                                            Strides3 target_strides, SeriesShape shape, T* modulus,
                                            opmath_t<T>* phase, void* workspace, cudaStream_t stream);

// grad: contiguous [outer, H, inner] = Re(sum_{k<F} g_k u_k exp(+2 pi i k t / H)) with g the
// [outer, F, inner] strided grad_modulus and u the contiguous [outer, F, inner, 2] phase;
// shape.length = H.
template <typename T>
cudaError_t launch_frequency_alignment_bins_backward(const T* grad_modulus, Strides3 grad_modulus_strides,
                                                     const opmath_t<T>* phase, SeriesShape shape, T* grad,
                                                     void* workspace, cudaStream_t stream);

// out[o, t, i] = grad_rows[o, i] * grad[o, t, i] (grad, out contiguous [outer, H, inner]; grad_rows
// strided by (outer_stride, inner_stride), e.g. 0 for an expanded scalar).
template <typename T>
cudaError_t launch_scale_rows(const opmath_t<T>* grad_rows, int64_t rows_outer_stride, int64_t rows_inner_stride,
                              const T* grad, SeriesShape shape, T* out, cudaStream_t stream);

}  // namespace ddtime::kernels
