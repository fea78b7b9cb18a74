// Execution context and device helpers shared by the ddtime kernels (included by the *_kernel.cu
// files only; no op header).
//
// Kernels are written as block programs against an execution context: DeviceCtx below maps it to
// the CUDA thread block; the host emulator of tests/test_cuda_compile.py supplies a context with
// the same members and runs the identical block programs on the CPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <mutex>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernel_types.h"  // opmath_t

#define DDT_HD __host__ __device__ __forceinline__

namespace ddtime::kernels::detail {

constexpr int kWarp = 32;

struct DeviceCtx {
  __device__ int thread() const { return threadIdx.x; }
  __device__ int64_t block() const { return blockIdx.x; }
  __device__ int64_t blocks() const { return gridDim.x; }
  __device__ int lane() const { return threadIdx.x % kWarp; }
  __device__ int warp() const { return threadIdx.x / kWarp; }
  __device__ int warps() const { return blockDim.x / kWarp; }
  __device__ void sync() const { __syncthreads(); }
  template <typename I, class F>
  __device__ void for_each(I n, F&& f) const {  // block-strided loop over [0, n)
    for (I i = threadIdx.x; i < n; i += blockDim.x) f(i);
  }
  // Xor-butterfly reductions; every lane ends with the same bits (IEEE + and fmax commute).
  template <typename R>
  __device__ R warp_sum(R v) const {
    for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
  }
  template <typename R>
  __device__ R warp_max(R v) const {
    for (int offset = kWarp / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
  }
};

// ---- scalar conversions ------------------------------------------------------------------------
DDT_HD float to_op(__half v) { return __half2float(v); }
DDT_HD float to_op(__nv_bfloat16 v) { return __bfloat162float(v); }
DDT_HD float to_op(float v) { return v; }
DDT_HD double to_op(double v) { return v; }
template <typename T>
DDT_HD T from_op(opmath_t<T> v);
template <>
DDT_HD __half from_op<__half>(float v) { return __float2half_rn(v); }
template <>
DDT_HD __nv_bfloat16 from_op<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
DDT_HD float from_op<float>(float v) { return v; }
template <>
DDT_HD double from_op<double>(double v) { return v; }

// ---- math that stays accurate under --use_fast_math ----------------------------------------------
// (--use_fast_math turns expf / logf into the approximate __expf / __logf; these do not.)
DDT_HD float hypot_op(float a, float b) { return hypotf(a, b); }
DDT_HD double hypot_op(double a, double b) { return hypot(a, b); }

// exp to ~1 ulp: Cody-Waite reduction by ln 2, degree-7 Taylor polynomial on |r| <= ln2 / 2.
DDT_HD float exp_op(float x) {
  if (!(x > -104.0f)) return x != x ? x : 0.0f;  // NaN stays NaN, underflow (and -inf) gives 0
  if (x > 88.72283935546875f) return INFINITY;
  const float n = rintf(x * 1.44269504088896341f);
  float r = fmaf(n, -0.693145751953125f, x);
  r = fmaf(n, -1.428606820309417232e-6f, r);
  float p = 1.98412698412698413e-4f;
  p = fmaf(p, r, 1.38888888888888889e-3f);
  p = fmaf(p, r, 8.33333333333333333e-3f);
  p = fmaf(p, r, 4.16666666666666667e-2f);
  p = fmaf(p, r, 1.66666666666666667e-1f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  return ldexpf(p, static_cast<int>(n));
}
DDT_HD double exp_op(double x) { return exp(x); }
DDT_HD float log_op(float x) { return static_cast<float>(log(static_cast<double>(x))); }
DDT_HD double log_op(double x) { return log(x); }

DDT_HD int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
DDT_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- device limits ------------------------------------------------------------------------------
struct DeviceLimits {
  int sm_count;
  size_t smem_optin;
};

// Limits of the current device, queried once per device (launch configuration depends on them).
inline cudaError_t device_limits(DeviceLimits* lim) {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static DeviceLimits cache[kMaxDevices];
  static cudaError_t status[kMaxDevices];
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  if (dev < 0 || dev >= kMaxDevices) return cudaErrorInvalidDevice;
  std::call_once(once[dev], [dev] {
    int sms = 0, optin = 0;
    cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cache[dev] = DeviceLimits{sms > 0 ? sms : 1, static_cast<size_t>(optin)};
    status[dev] = e;
  });
  *lim = cache[dev];
  return status[dev];
}

}  // namespace ddtime::kernels::detail
