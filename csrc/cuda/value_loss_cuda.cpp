// CUDA implementations of value_loss_fused, value_loss_backward, frequency_alignment_bins and
// frequency_alignment_bins_backward (TORCH_LIBRARY_IMPL(ddtime, CUDA)); kernels in value_loss_kernel.cu.
//
// Tensors reach the kernels as strided [outer, H, inner] views (no copy when the dimensions before
// and after `dim` each collapse to one stride, as for contiguous, transposed or expanded inputs;
// otherwise a contiguous copy). Outputs are allocated contiguous on the input's device and stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"
#include "torch_types.h"
#include "value_loss_kernel.cuh"

namespace ddtime {
namespace {

namespace k = ddtime::kernels;
using namespace checks;

// Stride of dims [begin, end) read as one axis, if they collapse (size-1 dims ignored).
std::optional<int64_t> group_stride(at::IntArrayRef sizes, at::IntArrayRef strides, int64_t begin, int64_t end) {
  int64_t stride = 0, expected = -1;
  for (int64_t d = end - 1; d >= begin; --d) {
    if (sizes[d] == 1) continue;
    if (expected >= 0 && strides[d] != expected) return std::nullopt;
    if (expected < 0) stride = strides[d];
    expected = strides[d] * sizes[d];
  }
  return stride;
}

int64_t prod(at::IntArrayRef sizes, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t d = begin; d < end; ++d) n *= sizes[d];
  return n;
}

struct View3 {
  at::Tensor tensor;  // the tensor whose data the strides describe
  k::Strides3 strides;
};

// t viewed as [outer, size(dim), inner].
View3 view3(const at::Tensor& t, int64_t dim) {
  const auto so = group_stride(t.sizes(), t.strides(), 0, dim);
  const auto si = group_stride(t.sizes(), t.strides(), dim + 1, t.dim());
  if (so && si) return {t, {*so, t.stride(dim), *si}};
  const int64_t len = t.size(dim), inner = prod(t.sizes(), dim + 1, t.dim());
  return {t.contiguous(), {len * inner, inner, 1}};
}

k::SeriesShape series_shape(at::IntArrayRef sizes, int64_t dim) {
  return {prod(sizes, 0, dim), sizes[dim], prod(sizes, dim + 1, static_cast<int64_t>(sizes.size()))};
}

std::vector<int64_t> with_size(at::IntArrayRef sizes, int64_t dim, int64_t size) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out[dim] = size;
  return out;
}

at::Tensor workspace_for(k::SeriesShape shape, const at::Tensor& like) {
  TORCH_CHECK_VALUE(shape.length <= (int64_t{1} << 28), "ddtime: the time axis may hold at most 2^28 samples, got ",
                    shape.length);
  size_t bytes = 0;
  C10_CUDA_CHECK(k::value_loss_workspace_bytes(shape, at::elementSize(opmath_type(like.scalar_type())), &bytes));
  return bytes > 0 ? at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte)) : at::Tensor();
}

void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

std::tuple<at::Tensor, at::Tensor> value_loss_fused_cuda(const at::Tensor& input, const at::Tensor& target,
                                                          double alpha, int64_t dim, bool compute_grad) {
  constexpr const char* op = "value_loss_fused";
  check_pair(op, input, target, dim);
  check_alpha(op, alpha);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto shape = series_shape(input.sizes(), dim);
  const View3 in = view3(input, dim), tg = view3(target, dim);
  at::Tensor rows =
      at::empty(without_dim(input.sizes(), dim), input.options().dtype(opmath_type(input.scalar_type())));
  at::Tensor grad = compute_grad ? at::empty(input.sizes(), input.options()) : at::empty({0}, input.options());
  if (input.numel() == 0) return {rows, grad};
  const at::Tensor ws = workspace_for(shape, input);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), op, [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    C10_CUDA_CHECK(k::launch_value_loss_fused<T>(
        reinterpret_cast<const T*>(in.tensor.const_data_ptr<scalar_t>()), in.strides,
        reinterpret_cast<const T*>(tg.tensor.const_data_ptr<scalar_t>()), tg.strides, shape, alpha,
        rows.mutable_data_ptr<R>(), compute_grad ? reinterpret_cast<T*>(grad.mutable_data_ptr<scalar_t>()) : nullptr,
        data_or_null(ws), stream));
  });
  return {rows, grad};
}

at::Tensor value_loss_backward_cuda(const at::Tensor& grad_rows, const at::Tensor& grad, int64_t dim) {
  constexpr const char* op = "value_loss_backward";
  check_value_loss_backward(op, grad_rows, grad, dim);
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto shape = series_shape(grad.sizes(), dim);
  const at::Tensor g = grad.contiguous();
  at::Tensor gr = grad_rows.to(opmath_type(grad.scalar_type()));
  auto so = group_stride(gr.sizes(), gr.strides(), 0, dim);
  auto si = group_stride(gr.sizes(), gr.strides(), dim, gr.dim());
  if (!so || !si) {
    gr = gr.contiguous();
    so = shape.inner;
    si = 1;
  }
  at::Tensor out = at::empty(grad.sizes(), grad.options());
  if (grad.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    C10_CUDA_CHECK(k::launch_scale_rows<T>(gr.const_data_ptr<R>(), *so, *si,
                                           reinterpret_cast<const T*>(g.const_data_ptr<scalar_t>()), shape,
                                           reinterpret_cast<T*>(out.mutable_data_ptr<scalar_t>()), stream));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> frequency_alignment_bins_cuda(const at::Tensor& input, const at::Tensor& target,
                                                                  int64_t dim) {
  constexpr const char* op = "frequency_alignment_bins";
  check_pair(op, input, target, dim);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto shape = series_shape(input.sizes(), dim);
  const int64_t F = shape.length / 2 + 1;
  const View3 in = view3(input, dim), tg = view3(target, dim);
  const auto out_sizes = with_size(input.sizes(), dim, F);
  auto phase_sizes = out_sizes;
  phase_sizes.push_back(2);
  at::Tensor modulus = at::empty(out_sizes, input.options());
  at::Tensor phase = at::empty(phase_sizes, input.options().dtype(opmath_type(input.scalar_type())));
  if (input.numel() == 0) return {modulus, phase};
  const at::Tensor ws = workspace_for(shape, input);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), op, [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    C10_CUDA_CHECK(k::launch_frequency_alignment_bins<T>(
        reinterpret_cast<const T*>(in.tensor.const_data_ptr<scalar_t>()), in.strides,
        reinterpret_cast<const T*>(tg.tensor.const_data_ptr<scalar_t>()), tg.strides, shape,
        reinterpret_cast<T*>(modulus.mutable_data_ptr<scalar_t>()), phase.mutable_data_ptr<R>(), data_or_null(ws),
        stream));
  });
  return {modulus, phase};
}

at::Tensor frequency_alignment_bins_backward_cuda(const at::Tensor& grad_modulus, const at::Tensor& phase,
                                                  int64_t dim, int64_t length) {
  constexpr const char* op = "frequency_alignment_bins_backward";
  check_bins_backward(op, grad_modulus, phase, dim, length);
  const c10::cuda::CUDAGuard guard(grad_modulus.device());
  const auto shape = series_shape(with_size(grad_modulus.sizes(), dim, length), dim);
  const View3 gm = view3(grad_modulus, dim);
  const at::Tensor ph = phase.to(opmath_type(grad_modulus.scalar_type())).contiguous();
  at::Tensor grad = at::empty(with_size(grad_modulus.sizes(), dim, length), grad_modulus.options());
  if (grad.numel() == 0) return grad;
  const at::Tensor ws = workspace_for(shape, grad_modulus);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_modulus.scalar_type(), op, [&] {
    using T = typename KernelType<scalar_t>::type;
    using R = k::opmath_t<T>;
    C10_CUDA_CHECK(k::launch_frequency_alignment_bins_backward<T>(
        reinterpret_cast<const T*>(gm.tensor.const_data_ptr<scalar_t>()), gm.strides, ph.const_data_ptr<R>(), shape,
        reinterpret_cast<T*>(grad.mutable_data_ptr<scalar_t>()), data_or_null(ws), stream));
  });
  return grad;
}

}  // namespace
}  // namespace ddtime

TORCH_LIBRARY_IMPL(ddtime, CUDA, m) {
  m.impl("value_loss_fused", &ddtime::value_loss_fused_cuda);
  m.impl("value_loss_backward", &ddtime::value_loss_backward_cuda);
  m.impl("frequency_alignment_bins", &ddtime::frequency_alignment_bins_cuda);
  m.impl("frequency_alignment_bins_backward", &ddtime::frequency_alignment_bins_backward_cuda);
}
