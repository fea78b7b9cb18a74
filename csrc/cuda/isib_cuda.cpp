// CUDA implementations of pairwise_symmetric_kl(_backward) and isib_loss(_backward)
// (TORCH_LIBRARY_IMPL(ddtime, CUDA)); kernels in isib_kernel.cu. x is read as a contiguous
// [S, N, L] tensor; the workspace (O(S*N + splits*S^2) forward, O(S*N*L + S^2) backward, in the
// accumulation dtype) comes from the caching allocator on the current stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "isib_kernel.cuh"
#include "torch_types.h"

namespace ddtime {
namespace {

namespace k = ddtime::kernels;

// checks.h, then the limits of the kernels' index arithmetic.
void check_x(const at::Tensor& x, double tau, const char* op) {
  checks::check_samples(op, x, tau);
  TORCH_CHECK_VALUE(x.size(0) <= (int64_t{1} << 20) && x.size(1) * x.size(2) < (int64_t{1} << 31), "ddtime::", op,
                    ": x may hold at most 2^20 samples of fewer than 2^31 values each, got shape ", x.sizes());
}

// t as a contiguous opmath tensor.
at::Tensor opmath_operand(const at::Tensor& t, const at::Tensor& x) {
  return t.to(opmath_type(x.scalar_type())).contiguous();
}

// Runs the forward; returns D and, when with_loss, the 0-dim ISIB loss.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x_in, double tau, bool with_loss, const char* op) {
  check_x(x_in, tau, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t S = x.size(0), N = x.size(1), L = x.size(2);
  const auto opts = x.options().dtype(opmath_type(x.scalar_type()));
  at::Tensor D = at::empty({S, S}, opts);
  at::Tensor loss = with_loss ? at::empty({}, opts) : at::Tensor();
  int64_t elements = 0;
  const int op_size = static_cast<int>(at::elementSize(opmath_type(x.scalar_type())));
  C10_CUDA_CHECK(k::pairwise_kl_forward_workspace(S, N, L, op_size, &elements));
  at::Tensor ws = at::empty({elements}, opts);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pairwise_kl_forward", [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    C10_CUDA_CHECK(k::launch_pairwise_kl_forward<T>(reinterpret_cast<const T*>(x.const_data_ptr<scalar_t>()), S, N, L,
                                                    tau, D.mutable_data_ptr<R>(),
                                                    with_loss ? loss.mutable_data_ptr<R>() : nullptr,
                                                    ws.mutable_data_ptr<R>(), stream));
  });
  return {loss, D};
}

at::Tensor pairwise_symmetric_kl_cuda(const at::Tensor& x, double tau) {
  return std::get<1>(forward(x, tau, false, "pairwise_symmetric_kl"));
}

std::tuple<at::Tensor, at::Tensor> isib_loss_cuda(const at::Tensor& x, double tau) {
  return forward(x, tau, true, "isib_loss");
}

// Shared backward; grad_D (pairwise) or grad_loss + D (isib) as contiguous opmath tensors.
at::Tensor backward(const at::Tensor& x_in, double tau, const at::Tensor& grad_D, const at::Tensor& grad_loss,
                    const at::Tensor& D) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t S = x.size(0), N = x.size(1), L = x.size(2);
  const auto opts = x.options().dtype(opmath_type(x.scalar_type()));
  at::Tensor ws = at::empty({k::pairwise_kl_backward_workspace(S, N, L)}, opts);
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pairwise_kl_backward", [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    const T* xp = reinterpret_cast<const T*>(x.const_data_ptr<scalar_t>());
    T* gp = reinterpret_cast<T*>(grad_x.mutable_data_ptr<scalar_t>());
    if (grad_D.defined()) {
      C10_CUDA_CHECK(k::launch_pairwise_kl_backward<T>(grad_D.const_data_ptr<R>(), xp, S, N, L, tau, gp,
                                                       ws.mutable_data_ptr<R>(), stream));
    } else {
      C10_CUDA_CHECK(k::launch_isib_backward<T>(grad_loss.const_data_ptr<R>(), D.const_data_ptr<R>(), xp, S, N, L, tau,
                                                gp, ws.mutable_data_ptr<R>(), stream));
    }
  });
  return grad_x;
}

at::Tensor pairwise_symmetric_kl_backward_cuda(const at::Tensor& grad_D, const at::Tensor& x, double tau) {
  constexpr const char* op = "pairwise_symmetric_kl_backward";
  check_x(x, tau, op);
  checks::check_square(op, "grad_D", grad_D, x);
  const at::Tensor g = opmath_operand(grad_D, x);
  return backward(x, tau, g, at::Tensor(), at::Tensor());
}

at::Tensor isib_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& D, const at::Tensor& x, double tau) {
  constexpr const char* op = "isib_loss_backward";
  check_x(x, tau, op);
  checks::check_square(op, "D", D, x);
  checks::check_grad_loss(op, grad_loss, x);
  const at::Tensor gl = opmath_operand(grad_loss, x);
  const at::Tensor d = opmath_operand(D, x);
  return backward(x, tau, at::Tensor(), gl, d);
}

}  // namespace
}  // namespace ddtime

TORCH_LIBRARY_IMPL(ddtime, CUDA, m) {
  m.impl("pairwise_symmetric_kl", &ddtime::pairwise_symmetric_kl_cuda);
  m.impl("pairwise_symmetric_kl_backward", &ddtime::pairwise_symmetric_kl_backward_cuda);
  m.impl("isib_loss", &ddtime::isib_loss_cuda);
  m.impl("isib_loss_backward", &ddtime::isib_loss_backward_cuda);
}
