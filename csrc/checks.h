// Argument checks of the ddtime ops, called by the CPU and the CUDA bindings alike, so a bad direct
// call of torch.ops.ddtime.* raises the same Python exception on every device: TypeError for a
// dtype, ValueError for anything else, as ddtime/_validation.py (which runs first in the public
// API). Device-specific limits stay in the bindings, also as ValueError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace ddtime::checks {

inline bool is_loss_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_float(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.defined(), "ddtime::", op, ": ", name, " must be a defined tensor");
  TORCH_CHECK_TYPE(is_loss_dtype(t.scalar_type()), "ddtime::", op, ": ", name,
                   " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
}

inline void check_device(const char* op, const char* name, const at::Tensor& t, const char* of,
                         const at::Tensor& other) {
  TORCH_CHECK_VALUE(t.device() == other.device(), "ddtime::", op, ": ", name, " must be on the device of ", of,
                    " (", other.device(), "), got ", t.device());
}

inline void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() >= 1, "ddtime::", op, ": ", name, " must have at least 1 dimension, got shape ",
                    t.sizes());
  TORCH_CHECK_VALUE(0 <= dim && dim < t.dim(), "ddtime::", op, ": dim must be in [0, ", t.dim() - 1, "] for ",
                    name, " of shape ", t.sizes(), ", got ", dim);
}

// sizes without entry dim.
inline std::vector<int64_t> without_dim(at::IntArrayRef sizes, int64_t dim) {
  std::vector<int64_t> out = sizes.vec();
  out.erase(out.begin() + dim);
  return out;
}

// value_loss_fused / frequency_alignment_bins: input and target alike, a non-empty time axis dim.
inline void check_pair(const char* op, const at::Tensor& input, const at::Tensor& target, int64_t dim) {
  check_float(op, "input", input);
  check_float(op, "target", target);
  TORCH_CHECK_VALUE(input.sizes() == target.sizes(), "ddtime::", op, ": target must have the shape of input ",
                    input.sizes(), ", got ", target.sizes());
  TORCH_CHECK_TYPE(input.scalar_type() == target.scalar_type(), "ddtime::", op,
                   ": target must have the dtype of input (", input.scalar_type(), "), got ", target.scalar_type());
  check_device(op, "target", target, "input", input);
  check_dim(op, "input", input, dim);
  TORCH_CHECK_VALUE(input.size(dim) >= 1, "ddtime::", op, ": input.size(dim) must be >= 1, got shape ",
                    input.sizes(), " with dim ", dim);
}

inline void check_alpha(const char* op, double alpha) {
  TORCH_CHECK_VALUE(alpha >= 0.0 && alpha <= 1.0, "ddtime::", op, ": alpha must be in [0, 1], got ", alpha);
}

inline void check_value_loss_backward(const char* op, const at::Tensor& grad_rows, const at::Tensor& grad,
                                      int64_t dim) {
  check_float(op, "grad", grad);
  check_float(op, "grad_rows", grad_rows);
  check_dim(op, "grad", grad, dim);
  const std::vector<int64_t> rows_shape = without_dim(grad.sizes(), dim);
  TORCH_CHECK_VALUE(grad_rows.sizes() == at::IntArrayRef(rows_shape), "ddtime::", op, ": grad_rows must ",
                    "have the shape of grad ", grad.sizes(), " without dim ", dim, ", i.e. ",
                    at::IntArrayRef(rows_shape), ", got ", grad_rows.sizes());
  check_device(op, "grad_rows", grad_rows, "grad", grad);
}

inline void check_bins_backward(const char* op, const at::Tensor& grad_modulus, const at::Tensor& phase, int64_t dim,
                                int64_t length) {
  check_float(op, "grad_modulus", grad_modulus);
  check_float(op, "phase", phase);
  check_dim(op, "grad_modulus", grad_modulus, dim);
  TORCH_CHECK_VALUE(length >= 1, "ddtime::", op, ": length must be >= 1, got ", length);
  TORCH_CHECK_VALUE(grad_modulus.size(dim) == length / 2 + 1, "ddtime::", op, ": grad_modulus.size(dim) must be ",
                    "length // 2 + 1 = ", length / 2 + 1, ", got shape ", grad_modulus.sizes(), " with dim ", dim);
  std::vector<int64_t> phase_shape = grad_modulus.sizes().vec();
  phase_shape.push_back(2);
  TORCH_CHECK_VALUE(phase.sizes() == at::IntArrayRef(phase_shape), "ddtime::", op,
                    ": phase must have shape grad_modulus.shape + (2,) = ", at::IntArrayRef(phase_shape), ", got ",
                    phase.sizes());
  check_device(op, "phase", phase, "grad_modulus", grad_modulus);
}

// x of the pairwise-KL / ISIB ops: a non-empty [S, N, L] float tensor; tau finite and > 0.
inline void check_samples(const char* op, const at::Tensor& x, double tau) {
  check_float(op, "x", x);
  TORCH_CHECK_VALUE(x.dim() == 3, "ddtime::", op, ": x must have shape [S, N, L], got ", x.sizes());
  TORCH_CHECK_VALUE(x.numel() > 0, "ddtime::", op, ": x must not be empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(std::isfinite(tau) && tau > 0, "ddtime::", op, ": tau must be a finite number > 0, got ", tau);
}

// grad_D or D: a float [S, S] tensor on the device of x.
inline void check_square(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  check_float(op, name, t);
  const int64_t S = x.size(0);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == S && t.size(1) == S, "ddtime::", op, ": ", name,
                    " must have shape [", S, ", ", S, "] (S = x.size(0)), got ", t.sizes());
  check_device(op, name, t, "x", x);
}

// grad_loss of isib_loss_backward: one float value on the device of x.
inline void check_grad_loss(const char* op, const at::Tensor& grad_loss, const at::Tensor& x) {
  check_float(op, "grad_loss", grad_loss);
  TORCH_CHECK_VALUE(grad_loss.numel() == 1, "ddtime::", op, ": grad_loss must have one element, got shape ",
                    grad_loss.sizes());
  check_device(op, "grad_loss", grad_loss, "x", x);
}

}  // namespace ddtime::checks
