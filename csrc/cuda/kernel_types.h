// Types shared by every kernel and its launcher header (plain C++, safe for the host compiler).
#pragma once

namespace ddtime::kernels {

// Accumulation type: float for __half / __nv_bfloat16 / float, double for double.
template <typename T>
struct OpMath {
  using type = float;
};
template <>
struct OpMath<double> {
  using type = double;
};
template <typename T>
using opmath_t = typename OpMath<T>::type;

}  // namespace ddtime::kernels
