"""Base class and shared layers of the forecasting backbones.

Every backbone maps ``x: (batch, channels, seq_len)`` to ``(batch, channels, pred_len)`` and
exposes ``embed(x) -> (batch, dim)``. The modules hold parameters only (no buffers, no in-place
ops, dropout off by default), so they run unchanged under ``torch.func.functional_call`` with
an explicit parameter vector and support double backward (trajectory matching).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.checks import check_int, check_number


def check_dropout(value) -> float:
    """A dropout rate in [0, 1)."""
    return check_number("dropout", value, minimum=0.0, below=1.0)


class ForecastModel(nn.Module):
    """Common interface: ``forward(x)`` forecasts, ``embed(x)`` returns the features before the head.

    ``adam_lr`` is the family's usual Adam learning rate, used by ``train_model`` when no rate is
    given: 5e-3 for the LTSF-Linear models (their ETTh1 scripts), 1e-3 for MLP/CNN/LSTM, 1e-4
    (Time-Series-Library's default) for the transformers.
    """

    adam_lr = 1e-3

    def __init__(self, seq_len: int, pred_len: int, channels: int):
        super().__init__()
        self.seq_len = check_int("seq_len", seq_len)
        self.pred_len = check_int("pred_len", pred_len)
        self.channels = check_int("channels", channels)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[2] != self.seq_len:
            raise ValueError(
                f"x: expected shape (batch, {self.channels}, {self.seq_len}) for "
                f"{type(self).__name__}(channels={self.channels}, seq_len={self.seq_len}), got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"seq_len={self.seq_len}, pred_len={self.pred_len}, channels={self.channels}"


class TimeLinear(nn.Module):
    """Linear map along the time axis: (..., channels, in_len) -> (..., channels, out_len).

    ``individual=False`` shares one (out_len, in_len) matrix across channels; ``individual=True``
    holds one per channel (LTSF-Linear's ``individual`` flag). Initialised as ``nn.Linear``.
    """

    def __init__(self, in_len: int, out_len: int, channels: int, individual: bool = False):
        super().__init__()
        if not isinstance(individual, bool):
            raise TypeError(f"individual: expected a bool, got {type(individual).__name__} {individual!r}")
        self.individual = individual
        shape = (channels, out_len, in_len) if individual else (out_len, in_len)
        bound = 1.0 / math.sqrt(in_len)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(shape[:-1]).uniform_(-bound, bound))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[-1]} -> {self.weight.shape[-2]}, individual={self.individual}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.individual:
            return torch.einsum("...ci,coi->...co", x, self.weight) + self.bias
        return F.linear(x, self.weight, self.bias)


class InstanceNorm:
    """RevIN-style instance normalisation over time without learnable affine or stored statistics.

    ``normalize`` returns the normalised input and the (mean, std) needed by ``denormalize``.
    PatchTST / iTransformer detach the statistics; that changes only the gradient with respect
    to the input (the statistics do not depend on the parameters), so they are kept attached
    here: distillation differentiates with respect to the synthetic inputs and needs the full
    gradient.
    """

    eps = 1e-5

    @staticmethod
    def normalize(x: torch.Tensor):
        mean = x.mean(dim=-1, keepdim=True)
        std = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + InstanceNorm.eps)
        return (x - mean) / std, (mean, std)

    @staticmethod
    def denormalize(y: torch.Tensor, stats) -> torch.Tensor:
        mean, std = stats
        return y * std + mean
