// Shared by the CUDA bindings: torch scalar types -> the kernels' CUDA types, and the accumulation dtype.
#pragma once

#include <ATen/ATen.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ddtime {

template <typename S>
struct KernelType {
  using type = S;
};
template <>
struct KernelType<at::Half> {
  using type = __half;
};
template <>
struct KernelType<at::BFloat16> {
  using type = __nv_bfloat16;
};

// float64 accumulates in float64, every other dtype in float32.
inline at::ScalarType opmath_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace ddtime
