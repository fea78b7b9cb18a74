"""Channel-independent 1-D convolutional network over the look-back window."""
import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel, check_dropout


class CNN(ForecastModel):
    """Per channel: ``layers`` Conv1d (``hidden`` filters, ``kernel_size``, "same" padding, ReLU)
    over time, then a linear head from the flattened feature map to the horizon.

    Weights are shared across channels; no BatchNorm (no running statistics). embed: the
    flattened feature maps, (batch, channels * hidden * seq_len).
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        channels: int,
        *,
        hidden: int = 16,
        layers: int = 2,
        kernel_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__(seq_len, pred_len, channels)
        check_int("hidden", hidden)
        check_int("layers", layers)
        check_int("kernel_size", kernel_size)
        self.dropout = check_dropout(dropout)
        widths = [1] + [hidden] * layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel_size, padding="same") for a, b in zip(widths[:-1], widths[1:])
        )
        self.head = nn.Linear(hidden * seq_len, pred_len)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        batch = x.shape[0]
        h = x.reshape(batch * self.channels, 1, self.seq_len)
        for conv in self.convs:
            h = F.dropout(F.relu(conv(h)), self.dropout, self.training)
        return h.reshape(batch, self.channels, -1)  # (batch, channels, hidden * seq_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x).flatten(1)
