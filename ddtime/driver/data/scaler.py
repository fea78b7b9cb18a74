"""Per-channel standardisation of series laid out as ``[..., N, T]`` (channels, then time)."""
from __future__ import annotations

import warnings

import torch


class Scaler:
    """``(x - mean) / std`` per channel; ``mean``, ``std``: float64 ``[N]``.

    ``fit(series, unbiased=False)`` is sklearn's StandardScaler (population std, a zero std
    replaced by 1); ``unbiased=True`` is ``torch.std``'s default (CondTSF's z-score).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        std = torch.as_tensor(std, dtype=torch.float64)
        if mean.dim() != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be 1-d of equal length, got {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("std must be positive in every channel")
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, series: torch.Tensor, *, unbiased: bool = False) -> Scaler:
        """Fit on ``series: (N, T)``, statistics over time."""
        if not isinstance(series, torch.Tensor) or series.dim() != 2 or series.shape[1] < 1 + unbiased:
            raise ValueError(f"series must be a (channels, time) tensor with at least {1 + unbiased} time "
                             f"step(s), got {getattr(series, 'shape', type(series).__name__)}")
        series = series.to(torch.float64)
        mean = series.mean(dim=1)
        std = series.std(dim=1, correction=int(unbiased))
        constant = std == 0
        if constant.any():
            warnings.warn(f"channel(s) {constant.nonzero().flatten().tolist()} are constant over the fitting "
                          "rows; their std is set to 1", stacklevel=2)
            std = torch.where(constant, torch.ones_like(std), std)
        return cls(mean, std)

    @property
    def n_channels(self) -> int:
        return self.mean.numel()

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[-2] != self.n_channels:
            raise ValueError(f"x must be (..., {self.n_channels}, time), got {tuple(x.shape)}; under condtsf "
                             f"reshape channel-independent windows with .view(-1, {self.n_channels}, time)")
        dtype = x.dtype if x.dtype == torch.float64 else torch.float32
        return (self.mean.to(x.device, dtype).unsqueeze(-1), self.std.to(x.device, dtype).unsqueeze(-1))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (..., N, T)`` -> scaled, same shape and dtype."""
        mean, std = self._stats(x)
        return ((x.to(mean.dtype) - mean) / std).to(x.dtype)

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (..., N, T)`` scaled -> original units, same shape and dtype."""
        mean, std = self._stats(x)
        return (x.to(mean.dtype) * std + mean).to(x.dtype)

    def __repr__(self) -> str:
        return f"Scaler(n_channels={self.n_channels})"
