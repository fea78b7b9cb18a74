"""Argument checks shared by the functional API and the nn.Module wrappers.

Every check looks at metadata only (never at values), so it runs unchanged while torch.compile
traces with fake tensors. Errors name the argument and say what was expected.
"""
import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
REDUCTIONS = ("mean", "sum", "none")


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float32 for half types, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_tensor(name: str, value, *, min_dim: int = 1) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {value.dtype}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")


def check_pair(input: torch.Tensor, target: torch.Tensor, names=("input", "target")) -> None:
    """Both tensors valid, with the same shape, dtype and device."""
    a, b = names
    check_tensor(a, input)
    check_tensor(b, target)
    if input.shape != target.shape:
        raise ValueError(f"{b} must have the shape of {a} {tuple(input.shape)}, got {tuple(target.shape)}")
    if input.dtype != target.dtype:
        raise TypeError(f"{b} must have the dtype of {a} ({input.dtype}), got {target.dtype}")
    if input.device != target.device:
        raise ValueError(f"{b} must be on the device of {a} ({input.device}), got {target.device}")


def normalize_dim(dim, ndim: int, name: str = "dim") -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for a {ndim}-d input, got {dim}")
    return dim % ndim


def check_reduction(reduction, allowed=REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a positive float, got {type(tau).__name__}")
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    return float(tau)


def check_samples(x) -> torch.Tensor:
    """x: (S, N, L) or (S, L); returns the (S, N, L) view."""
    check_tensor("x", x)
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(f"x must have shape (samples, channels, length) or (samples, length), got {tuple(x.shape)}")
    return x
