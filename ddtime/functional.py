"""The fused losses, mirroring torch.nn.functional: tensors positional, hyperparameters keyword-only.

Definitions (docs/losses.md has them in full): with d = input - target along the time axis ``dim`` of length H and
F = H // 2 + 1 frequency bins,

* frequency alignment: ``|rfft(d)[k]|`` (not squared), averaged (``mean``) or summed (``sum``)
  over all bins of all series, or per bin (``none``, ``dim`` of size F);
* value loss: ``alpha * mean_k |rfft(d)[k]| + (1 - alpha) * mean_t d[t]^2`` per series; ``none``
  returns it per series (``dim`` removed), ``mean`` / ``sum`` reduce over series;
* pairwise symmetric KL: ``D_ij = (1/N) sum_n KL(p_in || p_jn) + KL(p_jn || p_in)``,
  ``p_in = softmax(x_in / tau)`` over time;
* ISIB: ``mean_{i<j} exp(-D_ij)`` (0 with a zero gradient for a single sample).

All accept float16, bfloat16, float32 and float64 (half types accumulate in float32) and return
the input's dtype. NaN or infinite inputs propagate to the result, as in torch.nn.functional.

>>> import torch, ddtime
>>> pred = torch.zeros(2, 3, 8)
>>> round(ddtime.frequency_alignment_loss(pred, pred + 1.0).item(), 6)  # all energy in DC: 8 / 5
1.6
>>> round(ddtime.value_loss(pred, pred + 1.0, alpha=0.5).item(), 6)      # 0.5 * 1.6 + 0.5 * 1
1.3
>>> x = torch.randn(4, 7, 24)
>>> ddtime.pairwise_symmetric_kl(x).shape
torch.Size([4, 4])
>>> ddtime.isib_loss(x[:1]).item()
0.0
"""
import torch

from ddtime import _ops
from ddtime._validation import (
    check_alpha,
    check_pair,
    check_reduction,
    check_samples,
    check_tau,
    normalize_dim,
)

__all__ = ["frequency_alignment_loss", "value_loss", "pairwise_symmetric_kl", "isib_loss"]


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _value_rows(input, target, alpha, dim):
    rows, _ = _ops.ops.value_loss_fused(input, target, alpha, dim, _needs_grad(input, target))
    return rows


def _reduce_rows(rows, reduction, dtype):
    if reduction == "mean":
        rows = rows.mean()
    elif reduction == "sum":
        rows = rows.sum()
    return rows.to(dtype)


def frequency_alignment_loss(input, target, *, dim=-1, reduction="mean"):
    """Spectral alignment ``|rfft(input) - rfft(target)|`` along ``dim``.

    input, target: (..., H, ...) with the time axis at ``dim``, same shape, dtype and device.
    Returns a scalar for ``mean``/``sum``; for ``none`` the per-bin moduli, shaped like input with
    ``dim`` of size H // 2 + 1.
    """
    check_pair(input, target)
    dim = normalize_dim(dim, input.dim())
    check_reduction(reduction)
    if reduction == "none":
        modulus, _ = _ops.ops.frequency_alignment_bins(input, target, dim)
        return modulus
    rows = _value_rows(input, target, 1.0, dim)
    if reduction == "sum":  # rows hold the mean over the F bins of each series
        rows = rows * (input.shape[dim] // 2 + 1)
    return _reduce_rows(rows, reduction, input.dtype)


def value_loss(student, teacher, *, alpha=0.8, dim=-1, reduction="mean"):
    """DDTime's value term ``alpha * frequency + (1 - alpha) * MSE`` in one fused pass.

    student, teacher: (..., H, ...) forecasts with the time axis at ``dim``; the teacher side is
    normally detached. ``none`` returns the loss per series (input shape with ``dim`` removed);
    ``mean`` averages those, ``sum`` adds them.
    """
    check_pair(student, teacher, names=("student", "teacher"))
    alpha = check_alpha(alpha)
    dim = normalize_dim(dim, student.dim())
    check_reduction(reduction)
    return _reduce_rows(_value_rows(student, teacher, alpha, dim), reduction, student.dtype)


def pairwise_symmetric_kl(x, *, tau=1.0):
    """All-pairs symmetric KL between per-channel softmax(x / tau) over time.

    x: (S, N, L) or (S, L) (read as N = 1). Returns D: (S, S), symmetric, zero diagonal.
    """
    x3 = check_samples(x)
    tau = check_tau(tau)
    return _ops.ops.pairwise_symmetric_kl(x3, tau).to(x.dtype)


def isib_loss(x, *, tau=1.0):
    """Inter-sample information bottleneck ``mean_{i<j} exp(-D_ij)``; lower means more diverse.

    x: (S, N, L) or (S, L). Returns a scalar of x's dtype; 0 (with a zero gradient) when S = 1.
    """
    x3 = check_samples(x)
    tau = check_tau(tau)
    loss, _ = _ops.ops.isib_loss(x3, tau)
    return loss.to(x.dtype)
