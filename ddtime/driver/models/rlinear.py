"""RLinear (Li et al., 2023, "Revisiting Long-term Time Series Forecasting: An Investigation on Linear
Mapping"): reversible instance normalisation (RevIN) around one linear map along time.

RevIN normalises each input series by its own mean and std over time, applies a learnable per-channel
affine map, forecasts, then undoes both. The statistics are kept attached (see
:class:`ddtime.driver.models.base.InstanceNorm`), so the gradient reaches the synthetic inputs in full.
"""
import torch
from torch import nn

from ddtime.driver.models.base import ForecastModel, InstanceNorm, TimeLinear


class RLinear(ForecastModel):
    """RevIN (learnable affine per channel) + one linear layer from look-back to horizon.

    x: (batch, channels, seq_len) -> (batch, channels, pred_len). embed: flattened forecast
    ``(batch, channels * pred_len)``, as the other linear models (no hidden layer).
    """

    adam_lr = 5e-3

    def __init__(self, seq_len: int, pred_len: int, channels: int, *, individual: bool = False):
        super().__init__(seq_len, pred_len, channels)
        self.linear = TimeLinear(seq_len, pred_len, channels, individual)
        self.affine_weight = nn.Parameter(torch.ones(channels, 1))
        self.affine_bias = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z, stats = InstanceNorm.normalize(x)
        z = z * self.affine_weight + self.affine_bias
        y = self.linear(z)
        y = (y - self.affine_bias) / (self.affine_weight + InstanceNorm.eps ** 2)
        return InstanceNorm.denormalize(y, stats)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).flatten(1)
