// Autograd kernels of ddtime::isib_loss and ddtime::pairwise_symmetric_kl, for every device.
//
// In C++ rather than through torch.library.register_autograd: at the paper's size (x = [10, 7, 192])
// the kernels take ~30 us a call, and the Python autograd.Function (setup_context, saved-tensor
// bookkeeping, the Python backward) cost more than both of them together. Each forward redispatches
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
  m.impl("isib_loss", &ddtime::isib_loss_autograd);
  m.impl("pairwise_symmetric_kl", &ddtime::pairwise_symmetric_kl_autograd);
}
