"""LTSF-Linear family (Zeng et al., AAAI 2023): Linear, NLinear, DLinear.

The three models are linear maps along time, shared across channels unless ``individual=True``.
They have no hidden layer, so ``embed(x)`` is the flattened forecast ``(batch, channels *
pred_len)``: the only parameter-dependent representation they compute.
"""
import functools

import torch

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel, TimeLinear


@functools.lru_cache(maxsize=64)
def _averaging_matrix(length: int, kernel_size: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``(time, time)`` matrix M with ``moving_average(x) = x @ M.T`` (edge replication folded in)."""
    front = (kernel_size - 1) // 2
    index = (torch.arange(length).unsqueeze(1) + torch.arange(kernel_size) - front).clamp_(0, length - 1)
    counts = torch.zeros(length, length, dtype=torch.float64).scatter_add_(
        1, index, torch.ones(length, kernel_size, dtype=torch.float64))
    return (counts / kernel_size).to(dtype=dtype, device=device)


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Moving average along time with edge replication (LTSF-Linear ``moving_avg``).

    x: (..., time) -> (..., time). Any time length >= 1 works, including one shorter than the
    kernel: the series is padded with (k-1)//2 copies of its first value in front and k-1-(k-1)//2
    copies of its last value behind, then averaged with stride 1. Computed as one product with a
    cached (time, time) averaging matrix: the same numbers as LTSF-Linear's AvgPool1d up to
    rounding, several times faster on small batches and under ``vmap``.
    """
    matrix = _averaging_matrix(x.shape[-1], kernel_size, x.dtype, str(x.device))
    return x @ matrix.T


def series_decomposition(x: torch.Tensor, kernel_size: int):
    """x: (..., time) -> (seasonal, trend), both (..., time); trend = moving average, seasonal = x - trend."""
    trend = moving_average(x, kernel_size)
    return x - trend, trend


class Linear(ForecastModel):
    """One linear layer from the look-back to the horizon. embed: flattened forecast."""

    adam_lr = 5e-3

    def __init__(self, seq_len: int, pred_len: int, channels: int, *, individual: bool = False):
        super().__init__(seq_len, pred_len, channels)
        self.linear = TimeLinear(seq_len, pred_len, channels, individual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.linear(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).flatten(1)


class NLinear(ForecastModel):
    """Linear on the look-back minus its last value, which is added back. embed: flattened forecast."""

    adam_lr = 5e-3

    def __init__(self, seq_len: int, pred_len: int, channels: int, *, individual: bool = False):
        super().__init__(seq_len, pred_len, channels)
        self.linear = TimeLinear(seq_len, pred_len, channels, individual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        last = x[..., -1:]
        return self.linear(x - last) + last

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).flatten(1)


class DLinear(ForecastModel):
    """Series decomposition (moving average, kernel 25) + one linear layer each for the seasonal
    and the trend part, summed. embed: flattened forecast."""

    adam_lr = 5e-3

    def __init__(
        self, seq_len: int, pred_len: int, channels: int, *, individual: bool = False, kernel_size: int = 25
    ):
        super().__init__(seq_len, pred_len, channels)
        self.kernel_size = check_int("kernel_size", kernel_size)
        self.seasonal = TimeLinear(seq_len, pred_len, channels, individual)
        self.trend = TimeLinear(seq_len, pred_len, channels, individual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        seasonal, trend = series_decomposition(x, self.kernel_size)
        return self.seasonal(seasonal) + self.trend(trend)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).flatten(1)
