"""nn.Module wrappers of the fused losses; hyperparameters are validated once, in __init__."""
from torch import nn

from ddtime import functional as F
from ddtime._validation import check_alpha, check_reduction, check_tau

__all__ = ["FrequencyAlignmentLoss", "ValueLoss", "ISIBLoss"]


def _check_dim(dim):
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    return dim


class FrequencyAlignmentLoss(nn.Module):
    """Module form of :func:`ddtime.frequency_alignment_loss`; forward(input, target)."""

    def __init__(self, *, dim=-1, reduction="mean"):
        super().__init__()
        self.dim = _check_dim(dim)
        self.reduction = check_reduction(reduction)

    def forward(self, input, target):
        return F.frequency_alignment_loss(input, target, dim=self.dim, reduction=self.reduction)

    def extra_repr(self):
        return f"dim={self.dim}, reduction={self.reduction!r}"


class ValueLoss(nn.Module):
    """Module form of :func:`ddtime.value_loss`; forward(student, teacher)."""

    def __init__(self, *, alpha=0.8, dim=-1, reduction="mean"):
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.dim = _check_dim(dim)
        self.reduction = check_reduction(reduction)

    def forward(self, student, teacher):
        return F.value_loss(student, teacher, alpha=self.alpha, dim=self.dim, reduction=self.reduction)

    def extra_repr(self):
        return f"alpha={self.alpha}, dim={self.dim}, reduction={self.reduction!r}"


class ISIBLoss(nn.Module):
    """Module form of :func:`ddtime.isib_loss`; forward(x) with x: (S, N, L) or (S, L)."""

    def __init__(self, *, tau=1.0):
        super().__init__()
        self.tau = check_tau(tau)

    def forward(self, x):
        return F.isib_loss(x, tau=self.tau)

    def extra_repr(self):
        return f"tau={self.tau}"
