"""Loads ddtime._C and registers fake (shape) kernels and autograd for its operators.

The C++ side defines the schemas (csrc/ddtime.cpp), the CPU/CUDA kernels and the autograd of
isib_loss and pairwise_symmetric_kl (csrc/autograd.cpp: at the paper's size a Python
autograd.Function costs more than the kernels); the fake kernels of every op and the autograd of
the value-loss ops live here.
"""
import torch

from ddtime._validation import opmath_dtype

try:
    from ddtime import _C  # noqa: F401  (loading the library registers the operators)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ddtime._C is not built. Build it with `pip install --no-build-isolation .` "
        "(or `python setup.py build_ext --inplace` in a checkout)."
    ) from exc

ops = torch.ops.ddtime


def _without(shape, dim):
    return tuple(s for i, s in enumerate(shape) if i != dim)


def _with(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


# ---- fake kernels -------------------------------------------------------------------------
@torch.library.register_fake("ddtime::value_loss_fused")
def _(input, target, alpha, dim, compute_grad):
    rows = input.new_empty(_without(input.shape, dim), dtype=opmath_dtype(input.dtype))
    grad = input.new_empty(input.shape) if compute_grad else input.new_empty((0,))
    return rows, grad


@torch.library.register_fake("ddtime::value_loss_backward")
def _(grad_rows, grad, dim):
    return grad.new_empty(grad.shape)


@torch.library.register_fake("ddtime::frequency_alignment_bins")
def _(input, target, dim):
    shape = _with(input.shape, dim, input.shape[dim] // 2 + 1)
    return input.new_empty(shape), input.new_empty(shape + (2,), dtype=opmath_dtype(input.dtype))


@torch.library.register_fake("ddtime::frequency_alignment_bins_backward")
def _(grad_modulus, phase, dim, length):
    return grad_modulus.new_empty(_with(grad_modulus.shape, dim, length))


@torch.library.register_fake("ddtime::pairwise_symmetric_kl")
def _(x, tau):
    s = x.shape[0]
    return x.new_empty((s, s), dtype=opmath_dtype(x.dtype))


@torch.library.register_fake("ddtime::pairwise_symmetric_kl_backward")
def _(grad_D, x, tau):
    return x.new_empty(x.shape)


@torch.library.register_fake("ddtime::isib_loss")
def _(x, tau):
    s = x.shape[0]
    op = opmath_dtype(x.dtype)
    return x.new_empty((), dtype=op), x.new_empty((s, s), dtype=op)


@torch.library.register_fake("ddtime::isib_loss_backward")
def _(grad_loss, D, x, tau):
    return x.new_empty(x.shape)


# ---- autograd -----------------------------------------------------------------------------
def _first_order_only(name):
    """Backward runs with grad mode on only under ``create_graph=True``: the fused backward kernels
    have no derivative of their own, so refuse instead of returning a gradient that is silently
    cut from the graph."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"ddtime::{name}: double backward (create_graph=True) is not supported by the fused kernels; "
            f"use the plain-PyTorch twin in ddtime.reference for higher-order gradients"
        )


def _no_double_backward(name):
    return (
        f"ddtime::{name} was run with compute_grad=False, so it holds no gradient; call it through "
        "ddtime.value_loss / ddtime.frequency_alignment_loss, which request one when inputs require grad"
    )


def _value_setup(ctx, inputs, output):
    _, _, _, dim, _ = inputs
    _, grad = output
    ctx.mark_non_differentiable(grad)
    ctx.set_materialize_grads(False)  # no input-sized zeros for the non-differentiable output
    ctx.save_for_backward(grad)
    ctx.dim = dim


def _value_backward(ctx, grad_rows, _):
    if grad_rows is None:  # grads are not materialised: None means zero
        return None, None, None, None, None
    _first_order_only("value_loss_fused")
    (grad,) = ctx.saved_tensors
    if grad.numel() == 0:
        raise RuntimeError(_no_double_backward("value_loss_fused"))
    g = ops.value_loss_backward(grad_rows, grad, ctx.dim)
    need_input, need_target = ctx.needs_input_grad[:2]
    return (g if need_input else None), (-g if need_target else None), None, None, None


torch.library.register_autograd("ddtime::value_loss_fused", _value_backward, setup_context=_value_setup)


def _bins_setup(ctx, inputs, output):
    input, _, dim = inputs
    _, phase = output
    ctx.mark_non_differentiable(phase)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(phase)
    ctx.dim, ctx.length = dim, input.shape[dim]


def _bins_backward(ctx, grad_modulus, _):
    if grad_modulus is None:
        return None, None, None
    _first_order_only("frequency_alignment_bins")
    (phase,) = ctx.saved_tensors
    g = ops.frequency_alignment_bins_backward(grad_modulus, phase, ctx.dim, ctx.length)
    need_input, need_target = ctx.needs_input_grad[:2]
    return (g if need_input else None), (-g if need_target else None), None


torch.library.register_autograd("ddtime::frequency_alignment_bins", _bins_backward, setup_context=_bins_setup)


def cuda_version() -> int:
    """CUDA version ddtime._C was compiled with (e.g. 12080 for 12.8), -1 for a CPU-only build."""
    return int(ops.cuda_version())
