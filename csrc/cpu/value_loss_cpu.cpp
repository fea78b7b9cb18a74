// CPU kernels of the value loss and the frequency-alignment bins (ops 1-4 of the loss contract):
// value_loss_fused, value_loss_backward, frequency_alignment_bins, frequency_alignment_bins_backward.
//
// Every series along `dim` of a contiguous [outer, H, inner] view is one row. Rows are processed in
// blocks of one SIMD vector's worth of series (spectral_kernels.h): the block's d = input - target is
// gathered into a [H][lanes] buffer (converted to opmath), transformed by one real FFT and reduced,
// and the gradient is synthesised by one inverse real FFT and scattered back, all while the block
// is in cache. Blocks are spread over threads with at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "checks.h"
#include "cpu/fft.h"
#include "cpu/spectral_kernels.h"

namespace ddtime {
namespace {

using at::Tensor;
using namespace checks;

constexpr int64_t kMaxLanes = 16;           // 64-byte vectors of float
// Work below this many elements per thread stays on one thread (~0.1-0.2 ms of kernel time). An
// OpenMP fork/join waits for every worker: on a loaded machine a descheduled worker stalls the call
// for a whole scheduler slice (~10 ms measured), which small calls cannot amortise.
constexpr int64_t kGrainElements = 1 << 18;

// A contiguous tensor seen as [outer, length, inner] around `dim`: series r = (r / inner, r % inner),
// its element t at start(r, length) + t * inner.
struct SeriesLayout {
  int64_t outer = 1, inner = 1;
  SeriesLayout(at::IntArrayRef sizes, int64_t dim) {
    for (int64_t j = 0; j < dim; ++j) outer *= sizes[j];
    for (int64_t j = dim + 1; j < static_cast<int64_t>(sizes.size()); ++j) inner *= sizes[j];
  }
  int64_t series() const { return outer * inner; }
  int64_t start(int64_t r, int64_t length) const { return (r / inner) * length * inner + r % inner; }
};

// Calls f(t, l, offset) for each element t < length of the series first + l, l < count, in the order
// that reads the tensor sequentially (series by series when inner == 1, else step by step).
template <class F>
void for_each_element(const SeriesLayout& layout, int64_t length, int64_t first, int64_t count, F&& f) {
  if (layout.inner == 1) {
    for (int64_t l = 0; l < count; ++l) {
      const int64_t base = (first + l) * length;
      for (int64_t t = 0; t < length; ++t) f(t, l, base + t);
    }
    return;
  }
  TORCH_INTERNAL_ASSERT_DEBUG_ONLY(count <= kMaxLanes);
  int64_t base[kMaxLanes];
  for (int64_t l = 0; l < count; ++l) base[l] = layout.start(first + l, length);
  if (base[count - 1] - base[0] == count - 1) {  // the block lies inside one [length, inner] slab
    for (int64_t t = 0; t < length; ++t) {
      const int64_t row = base[0] + t * layout.inner;
      for (int64_t l = 0; l < count; ++l) f(t, l, row + l);
    }
  } else {
    for (int64_t t = 0; t < length; ++t) {
      for (int64_t l = 0; l < count; ++l) f(t, l, base[l] + t * layout.inner);
    }
  }
}

int64_t grain_blocks(int64_t length, int64_t lanes) {
  return std::max<int64_t>(1, kGrainElements / (length * lanes));
}

// A fresh output tensor. Its pages are first touched by these kernels; on Linux large outputs ask for
// transparent huge pages, since faulting in 4 KiB pages otherwise costs more than the kernel itself
// (c10 does the same for every allocation when THP_MEM_ALLOC_ENABLE=1). The advice is best effort.
Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
  if (out.nbytes() >= 4 * kHugePage && last > first) {
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

// 64-byte aligned scratch of one thread, carved into consecutive buffers of whole vectors.
template <class T>
class Scratch {
 public:
  explicit Scratch(int64_t count)
      : storage_(at::empty({count}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value))),
        next_(storage_.mutable_data_ptr<T>()) {}
  T* take(int64_t count) {
    T* out = next_;
    next_ += count;
    return out;
  }

 private:
  Tensor storage_;
  T* next_;
};

// Block buffer [length][lanes] <- x - y (x when y is null) of the series first .. first + count - 1;
// padding lanes are zero. Rows of opmath values (inner == 1) go through the SIMD transposer.
template <class scalar_t, class T>
void gather(const spectral::Kernels<T>& kernels, const SeriesLayout& layout, int64_t length, int64_t first,
            int64_t count, const scalar_t* x, const scalar_t* y, T* out) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    if (layout.inner == 1) {
      kernels.load_rows(x + first * length, y ? y + first * length : nullptr, length, count, out);
      return;
    }
  }
  const int64_t lanes = kernels.lanes;
  if (count < lanes) std::fill(out, out + length * lanes, T(0));
  if (y) {
    for_each_element(layout, length, first, count, [&](int64_t t, int64_t l, int64_t off) {
      out[t * lanes + l] = static_cast<T>(x[off]) - static_cast<T>(y[off]);
    });
  } else {
    for_each_element(layout, length, first, count, [&](int64_t t, int64_t l, int64_t off) {
      out[t * lanes + l] = static_cast<T>(x[off]);
    });
  }
}

// The series first .. first + count - 1 of out <- block buffer [length][lanes].
template <class scalar_t, class T>
void scatter(const spectral::Kernels<T>& kernels, const SeriesLayout& layout, int64_t length, int64_t first,
             int64_t count, const T* in, scalar_t* out) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    if (layout.inner == 1) {
      kernels.store_rows(in, length, count, out + first * length);
      return;
    }
  }
  const int64_t lanes = kernels.lanes;
  for_each_element(layout, length, first, count, [&](int64_t t, int64_t l, int64_t off) {
    out[off] = static_cast<scalar_t>(in[t * lanes + l]);
  });
}

// Phases are [outer, F, inner, 2]: with inner == 1 a series is one row of 2F values; otherwise the
// (cos, sin) pairs of a bin sit side by side, `inner` pairs apart from the next bin.
template <class T>
void gather_phase(const spectral::Kernels<T>& kernels, const SeriesLayout& layout, int64_t bins, int64_t first,
                  int64_t count, const T* phase, T* out) {
  if (layout.inner == 1) return kernels.load_rows(phase + 2 * first * bins, nullptr, 2 * bins, count, out);
  const int64_t lanes = kernels.lanes;
  if (count < lanes) std::fill(out, out + 2 * bins * lanes, T(0));
  for_each_element(layout, bins, first, count, [&](int64_t k, int64_t l, int64_t off) {
    out[2 * k * lanes + l] = phase[2 * off];
    out[(2 * k + 1) * lanes + l] = phase[2 * off + 1];
  });
}

template <class T>
void scatter_phase(const spectral::Kernels<T>& kernels, const SeriesLayout& layout, int64_t bins, int64_t first,
                   int64_t count, const T* in, T* phase) {
  if (layout.inner == 1) return kernels.store_rows(in, 2 * bins, count, phase + 2 * first * bins);
  const int64_t lanes = kernels.lanes;
  for_each_element(layout, bins, first, count, [&](int64_t k, int64_t l, int64_t off) {
    phase[2 * off] = in[2 * k * lanes + l];
    phase[2 * off + 1] = in[(2 * k + 1) * lanes + l];
  });
}

template <class scalar_t>
void value_loss_kernel(const Tensor& input, const Tensor& target, double alpha, const SeriesLayout& layout,
                       int64_t length, Tensor& rows, Tensor* grad) {
  using T = at::opmath_type<scalar_t>;
  const auto plan_holder = fft::real_plan<T>(length);
  const fft::RealPlan<T>& plan = *plan_holder;
  const spectral::Kernels<T>& kernels = spectral::kernels<T>();
  const int64_t lanes = kernels.lanes, series = layout.series(), H = length;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const scalar_t* y = target.const_data_ptr<scalar_t>();
  T* rows_out = rows.mutable_data_ptr<T>();
  scalar_t* grad_out = grad ? grad->mutable_data_ptr<scalar_t>() : nullptr;

  at::parallel_for(0, (series + lanes - 1) / lanes, grain_blocks(H, lanes), [&](int64_t begin, int64_t end) {
    const int64_t work = spectral::work_size(plan, lanes);
    Scratch<T> scratch(2 * H * lanes + 2 * plan.bins * lanes + lanes + work);
    T* d = scratch.take(H * lanes);
    T* g = scratch.take(H * lanes);
    T* spectrum = scratch.take(2 * plan.bins * lanes);
    T* block_rows = scratch.take(lanes);
    T* buffers = scratch.take(work);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * lanes, count = std::min(lanes, series - first);
      gather(kernels, layout, H, first, count, x, y, d);
      kernels.value(plan, d, static_cast<T>(alpha), block_rows, grad_out ? g : nullptr, spectrum, buffers);
      std::copy(block_rows, block_rows + count, rows_out + first);
      if (grad_out) scatter(kernels, layout, H, first, count, g, grad_out);
    }
  });
}

template <class scalar_t>
void bins_kernel(const Tensor& input, const Tensor& target, const SeriesLayout& layout, int64_t length,
                 Tensor& modulus, Tensor& phase) {
  using T = at::opmath_type<scalar_t>;
  const auto plan_holder = fft::real_plan<T>(length);
  const fft::RealPlan<T>& plan = *plan_holder;
  const spectral::Kernels<T>& kernels = spectral::kernels<T>();
  const int64_t lanes = kernels.lanes, series = layout.series(), H = length, F = plan.bins;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const scalar_t* y = target.const_data_ptr<scalar_t>();
  scalar_t* modulus_out = modulus.mutable_data_ptr<scalar_t>();
  T* phase_out = phase.mutable_data_ptr<T>();

  at::parallel_for(0, (series + lanes - 1) / lanes, grain_blocks(H, lanes), [&](int64_t begin, int64_t end) {
    const int64_t work = spectral::work_size(plan, lanes);
    Scratch<T> scratch(H * lanes + 3 * F * lanes + work);
    T* d = scratch.take(H * lanes);
    T* mod = scratch.take(F * lanes);
    T* unit = scratch.take(2 * F * lanes);
    T* buffers = scratch.take(work);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * lanes, count = std::min(lanes, series - first);
      gather(kernels, layout, H, first, count, x, y, d);
      kernels.bins(plan, d, mod, unit, buffers);
      scatter(kernels, layout, F, first, count, mod, modulus_out);
      scatter_phase(kernels, layout, F, first, count, unit, phase_out);
    }
  });
}

template <class scalar_t>
void bins_backward_kernel(const Tensor& grad_modulus, const Tensor& phase, const SeriesLayout& layout,
                          int64_t length, Tensor& grad) {
  using T = at::opmath_type<scalar_t>;
  const auto plan_holder = fft::real_plan<T>(length);
  const fft::RealPlan<T>& plan = *plan_holder;
  const spectral::Kernels<T>& kernels = spectral::kernels<T>();
  const int64_t lanes = kernels.lanes, series = layout.series(), H = length, F = plan.bins;
  const scalar_t* gm = grad_modulus.const_data_ptr<scalar_t>();
  const T* ph = phase.const_data_ptr<T>();
  scalar_t* grad_out = grad.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, (series + lanes - 1) / lanes, grain_blocks(H, lanes), [&](int64_t begin, int64_t end) {
    const int64_t work = spectral::work_size(plan, lanes);
    Scratch<T> scratch(H * lanes + 5 * F * lanes + work);
    T* g = scratch.take(F * lanes);
    T* unit = scratch.take(2 * F * lanes);
    T* out = scratch.take(H * lanes);
    T* spectrum = scratch.take(2 * F * lanes);
    T* buffers = scratch.take(work);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * lanes, count = std::min(lanes, series - first);
      gather<scalar_t, T>(kernels, layout, F, first, count, gm, nullptr, g);
      gather_phase(kernels, layout, F, first, count, ph, unit);
      kernels.bins_backward(plan, g, unit, out, spectrum, buffers);
      scatter(kernels, layout, H, first, count, out, grad_out);
    }
  });
}

// out[o, t, i] = rows[o, i] * grad[o, t, i], in opmath, rounded once to grad's dtype.
template <class scalar_t>
void scale_rows_kernel(const Tensor& rows, const Tensor& grad, const SeriesLayout& layout, int64_t length,
                       Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const T* r = rows.const_data_ptr<T>();
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  const int64_t inner = layout.inner, slab = length * inner;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / slab);
  at::parallel_for(0, layout.outer, grain, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const T* rs = r + s * inner;
      const scalar_t* gs = g + s * slab;
      scalar_t* os = o + s * slab;
      if (inner == 1) {
        const T scale = rs[0];
        for (int64_t t = 0; t < length; ++t) os[t] = static_cast<scalar_t>(scale * static_cast<T>(gs[t]));
        continue;
      }
      for (int64_t t = 0; t < length; ++t) {
        for (int64_t i = 0; i < inner; ++i) {
          os[t * inner + i] = static_cast<scalar_t>(rs[i] * static_cast<T>(gs[t * inner + i]));
        }
      }
    }
  });
}

std::vector<int64_t> resized(at::IntArrayRef sizes, int64_t dim, int64_t length) {
  std::vector<int64_t> out = sizes.vec();
  out[dim] = length;
  return out;
}

// ---- the operators ----------------------------------------------------------------------------
std::tuple<Tensor, Tensor> value_loss_fused_cpu(const Tensor& input, const Tensor& target, double alpha,
                                                int64_t dim, bool compute_grad) {
  check_pair("value_loss_fused", input, target, dim);
  check_alpha("value_loss_fused", alpha);
  Tensor rows =
      at::empty(without_dim(input.sizes(), dim), input.options().dtype(at::toOpMathType(input.scalar_type())));
  Tensor grad = compute_grad ? empty_output(input.sizes(), input.options()) : at::empty({0}, input.options());
  if (input.numel() == 0) return {rows, grad};
  const Tensor x = input.contiguous(), y = target.contiguous();
  const SeriesLayout layout(input.sizes(), dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "value_loss_fused", [&] {
    value_loss_kernel<scalar_t>(x, y, alpha, layout, input.size(dim), rows, compute_grad ? &grad : nullptr);
  });
  return {rows, grad};
}

Tensor value_loss_backward_cpu(const Tensor& grad_rows, const Tensor& grad, int64_t dim) {
  check_value_loss_backward("value_loss_backward", grad_rows, grad, dim);
  Tensor out = empty_output(grad.sizes(), grad.options());
  if (grad.numel() == 0) return out;
  const Tensor rows = grad_rows.to(at::toOpMathType(grad.scalar_type())).contiguous();
  const Tensor g = grad.contiguous();
  const SeriesLayout layout(grad.sizes(), dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "value_loss_backward", [&] {
    scale_rows_kernel<scalar_t>(rows, g, layout, grad.size(dim), out);
  });
  return out;
}

std::tuple<Tensor, Tensor> frequency_alignment_bins_cpu(const Tensor& input, const Tensor& target, int64_t dim) {
  check_pair("frequency_alignment_bins", input, target, dim);
  const int64_t length = input.size(dim), bins = length / 2 + 1;
  const std::vector<int64_t> shape = resized(input.sizes(), dim, bins);
  std::vector<int64_t> phase_shape = shape;
  phase_shape.push_back(2);
  Tensor modulus = empty_output(shape, input.options());
  Tensor phase = empty_output(phase_shape, input.options().dtype(at::toOpMathType(input.scalar_type())));
  if (input.numel() == 0) return {modulus, phase};
  const Tensor x = input.contiguous(), y = target.contiguous();
  const SeriesLayout layout(input.sizes(), dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "frequency_alignment_bins", [&] {
    bins_kernel<scalar_t>(x, y, layout, length, modulus, phase);
  });
  return {modulus, phase};
}

Tensor frequency_alignment_bins_backward_cpu(const Tensor& grad_modulus, const Tensor& phase, int64_t dim,
                                             int64_t length) {
  check_bins_backward("frequency_alignment_bins_backward", grad_modulus, phase, dim, length);
  Tensor grad = empty_output(resized(grad_modulus.sizes(), dim, length), grad_modulus.options());
  if (grad.numel() == 0) return grad;
  const Tensor gm = grad_modulus.contiguous();
  const Tensor ph = phase.to(at::toOpMathType(grad_modulus.scalar_type())).contiguous();
  const SeriesLayout layout(grad_modulus.sizes(), dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_modulus.scalar_type(), "frequency_alignment_bins_backward", [&] {
    bins_backward_kernel<scalar_t>(gm, ph, layout, length, grad);
  });
  return grad;
}

}  // namespace
}  // namespace ddtime

TORCH_LIBRARY_IMPL(ddtime, CPU, m) {
  m.impl("value_loss_fused", &ddtime::value_loss_fused_cpu);
  m.impl("value_loss_backward", &ddtime::value_loss_backward_cpu);
  m.impl("frequency_alignment_bins", &ddtime::frequency_alignment_bins_cpu);
  m.impl("frequency_alignment_bins_backward", &ddtime::frequency_alignment_bins_backward_cpu);
}
