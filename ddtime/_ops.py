"""Loads ddtime._C and registers fake (shape) kernels for its operators.

The C++ side defines the schemas (csrc/ddtime.cpp), the CPU/CUDA kernels and the autograd of every
op (csrc/autograd.cpp: at the paper's sizes a Python autograd.Function costs more than the kernels);
what torch.compile needs beyond that, the fake (shape) kernels, lives here.
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


def cuda_version() -> int:
    """CUDA version ddtime._C was compiled with (e.g. 12080 for 12.8), -1 for a CPU-only build."""
    return int(ops.cuda_version())
