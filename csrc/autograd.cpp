// Autograd kernels of the differentiable ddtime ops (value_loss_fused, frequency_alignment_bins,
// pairwise_symmetric_kl, isib_loss), for every device.
//
// In C++ rather than through torch.library.register_autograd: at the paper's sizes (x = [10, 7, 192]
// for ISIB, forecasts of [10, 7, 24] for the value loss) the kernels take 10-30 us a call, and a Python
// autograd.Function (setup_context, saved-tensor bookkeeping, the Python backward) cost more than
// forward and backward kernels together. Each forward redispatches
// below autograd to the device kernel and saves what its backward op takes; each backward is one
// call of that op. The backward ops have no derivative of their own: under create_graph=True they
// refuse instead of returning a gradient that is silently cut from the graph.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>

namespace ddtime {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void first_order_only(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), "ddtime::", op,
              ": double backward (create_graph=True) is not supported by the fused kernels; use the "
              "plain-PyTorch twin in ddtime.reference for higher-order gradients");
}

const auto& value_loss_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ddtime::value_loss_fused", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, int64_t, bool)>();
  return op;
}

const auto& value_loss_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ddtime::value_loss_backward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
  return op;
}

const auto& bins_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ddtime::frequency_alignment_bins", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t)>();
  return op;
}

// Called boxed: its `length` is a SymInt while torch.compile traces with dynamic shapes, which the
// typed (int64_t) signature cannot carry.
const c10::OperatorHandle& bins_backward_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("ddtime::frequency_alignment_bins_backward", "");
  return op;
}

const auto& isib_loss_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ddtime::isib_loss", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double)>();
  return op;
}

const auto& isib_loss_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ddtime::isib_loss_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op;
}

const auto& pairwise_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ddtime::pairwise_symmetric_kl", "")
                             .typed<at::Tensor(const at::Tensor&, double)>();
  return op;
}

const auto& pairwise_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ddtime::pairwise_symmetric_kl_backward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  return op;
}

// {d input, d target} = {g, -g} for the inputs that need a gradient; undefined for the others.
variable_list input_target_grads(AutogradContext* ctx, const at::Tensor& g, size_t nargs) {
  variable_list out(nargs);
  if (ctx->needs_input_grad(0)) out[0] = g;
  if (ctx->needs_input_grad(1)) out[1] = -g;
  return out;
}

// (rows, grad) = value_loss_fused(input, target, alpha, dim, compute_grad): grad = d rows / d input,
// computed in the forward pass, is saved; the backward op contracts it with the incoming grad_rows.
struct ValueLoss : torch::autograd::Function<ValueLoss> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& target, double alpha,
                               int64_t dim, bool compute_grad) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [rows, grad] = value_loss_op().call(input, target, alpha, dim, compute_grad);
    ctx->mark_non_differentiable({grad});
    ctx->set_materialize_grads(false);  // no input-sized zeros for the non-differentiable output
    ctx->save_for_backward({grad});
    ctx->saved_data["dim"] = dim;
    return {rows, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(5);
    first_order_only("value_loss_fused");
    const at::Tensor grad = ctx->get_saved_variables()[0];
    TORCH_CHECK(grad.sym_numel() != 0,
                "ddtime::value_loss_fused was run with compute_grad=False, so it holds no gradient; call it through "
                "ddtime.value_loss / ddtime.frequency_alignment_loss, which request one when inputs require grad");
    return input_target_grads(ctx, value_loss_backward_op().call(grads[0], grad, ctx->saved_data["dim"].toInt()), 5);
  }
};

// (modulus, phase) = frequency_alignment_bins(input, target, dim): phase (unit cos, sin) is saved.
struct FrequencyBins : torch::autograd::Function<FrequencyBins> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& target, int64_t dim) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [modulus, phase] = bins_op().call(input, target, dim);
    ctx->mark_non_differentiable({phase});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({phase});
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["length"] = input.sym_size(dim);
    return {modulus, phase};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(3);
    first_order_only("frequency_alignment_bins");
    torch::jit::Stack stack{grads[0], ctx->get_saved_variables()[0], ctx->saved_data["dim"], ctx->saved_data["length"]};
    bins_backward_op().callBoxed(stack);
    return input_target_grads(ctx, stack[0].toTensor(), 3);
  }
};

// (loss, D) = isib_loss(x, tau); D is returned for the backward and is not differentiable.
struct IsibLoss : torch::autograd::Function<IsibLoss> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, double tau) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [loss, D] = isib_loss_op().call(x, tau);
    ctx->mark_non_differentiable({D});
    ctx->set_materialize_grads(false);  // no gradient for loss: None, not an S x S zero
    ctx->save_for_backward({D, x});
    ctx->saved_data["tau"] = tau;
    return {loss, D};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};
    first_order_only("isib_loss");
    const variable_list saved = ctx->get_saved_variables();
    return {isib_loss_backward_op().call(grads[0], saved[0], saved[1], ctx->saved_data["tau"].toDouble()),
            at::Tensor()};
  }
};

struct PairwiseSymmetricKl : torch::autograd::Function<PairwiseSymmetricKl> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double tau) {
    at::AutoDispatchBelowADInplaceOrView below;
    ctx->save_for_backward({x});
    ctx->saved_data["tau"] = tau;
    return pairwise_op().call(x, tau);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    first_order_only("pairwise_symmetric_kl");
    const variable_list saved = ctx->get_saved_variables();
    return {pairwise_backward_op().call(grads[0], saved[0], ctx->saved_data["tau"].toDouble()), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> value_loss_autograd(const at::Tensor& input, const at::Tensor& target,
                                                       double alpha, int64_t dim, bool compute_grad) {
  const variable_list out = ValueLoss::apply(input, target, alpha, dim, compute_grad);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> bins_autograd(const at::Tensor& input, const at::Tensor& target, int64_t dim) {
  const variable_list out = FrequencyBins::apply(input, target, dim);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> isib_loss_autograd(const at::Tensor& x, double tau) {
  const variable_list out = IsibLoss::apply(x, tau);
  return {out[0], out[1]};
}

at::Tensor pairwise_symmetric_kl_autograd(const at::Tensor& x, double tau) {
  return PairwiseSymmetricKl::apply(x, tau);
}

}  // namespace
}  // namespace ddtime

TORCH_LIBRARY_IMPL(ddtime, Autograd, m) {
  m.impl("value_loss_fused", &ddtime::value_loss_autograd);
  m.impl("frequency_alignment_bins", &ddtime::bins_autograd);
  m.impl("isib_loss", &ddtime::isib_loss_autograd);
  m.impl("pairwise_symmetric_kl", &ddtime::pairwise_symmetric_kl_autograd);
}
