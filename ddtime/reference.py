"""Plain-PyTorch references of the fused losses: the test oracle and the benchmark baseline.

They follow the definitions of docs/losses.md literally (two real FFTs, the matrix-product form of the
pairwise KL)
with autograd doing the backward, and share the argument checks of the fused functions.
"""
import torch

from ddtime._validation import (
    check_alpha,
    check_pair,
    check_reduction,
    check_samples,
    check_tau,
    normalize_dim,
    opmath_dtype,
)

__all__ = [
    "frequency_alignment_loss_reference",
    "value_loss_reference",
    "pairwise_symmetric_kl_reference",
    "isib_loss_reference",
]


def _spectrum_modulus(input, target, dim):
    op = opmath_dtype(input.dtype)
    spec = torch.fft.rfft(input.to(op), dim=dim) - torch.fft.rfft(target.to(op), dim=dim)
    return spec.abs()


def frequency_alignment_loss_reference(input, target, *, dim=-1, reduction="mean"):
    """Reference of ddtime.frequency_alignment_loss; same arguments and result."""
    check_pair(input, target)
    dim = normalize_dim(dim, input.dim())
    check_reduction(reduction)
    modulus = _spectrum_modulus(input, target, dim)
    if reduction == "mean":
        modulus = modulus.mean()
    elif reduction == "sum":
        modulus = modulus.sum()
    return modulus.to(input.dtype)


def value_loss_reference(student, teacher, *, alpha=0.8, dim=-1, reduction="mean"):
    """Reference of ddtime.value_loss; same arguments and result."""
    check_pair(student, teacher, names=("student", "teacher"))
    alpha = check_alpha(alpha)
    dim = normalize_dim(dim, student.dim())
    check_reduction(reduction)
    op = opmath_dtype(student.dtype)
    freq = _spectrum_modulus(student, teacher, dim).mean(dim)
    mse = (student.to(op) - teacher.to(op)).square().mean(dim)
    rows = alpha * freq + (1.0 - alpha) * mse
    if reduction == "mean":
        rows = rows.mean()
    elif reduction == "sum":
        rows = rows.sum()
    return rows.to(student.dtype)


def pairwise_symmetric_kl_reference(x, *, tau=1.0):
    """Reference of ddtime.pairwise_symmetric_kl: ``C = P @ logP.T`` over the flattened N*L axis."""
    x3 = check_samples(x)
    tau = check_tau(tau)
    s, n, _ = x3.shape
    logp = torch.log_softmax(x3.to(opmath_dtype(x.dtype)) / tau, dim=-1).reshape(s, -1)
    p = logp.exp()
    cross = p @ logp.T
    h = (p * logp).sum(1)
    d = (h[:, None] + h[None, :] - cross - cross.T) / n
    d = d.masked_fill(torch.eye(s, dtype=torch.bool, device=x.device), 0.0)
    return d.to(x.dtype)


def isib_loss_reference(x, *, tau=1.0):
    """Reference of ddtime.isib_loss: ``mean_{i<j} exp(-D_ij)``."""
    x3 = check_samples(x)
    tau = check_tau(tau)
    s = x3.shape[0]
    if s == 1:
        return (x3.sum() * 0.0).to(x.dtype)
    d = pairwise_symmetric_kl_reference(x3.to(opmath_dtype(x.dtype)), tau=tau)
    i, j = torch.triu_indices(s, s, offset=1, device=x.device)
    return torch.exp(-d[i, j]).mean().to(x.dtype)
