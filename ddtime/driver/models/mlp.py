"""Channel-independent multilayer perceptron over the look-back window."""
import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel, check_dropout


class MLP(ForecastModel):
    """Per channel: ``layers`` hidden layers of width ``hidden`` with ReLU, then a linear head.

    Weights are shared across channels. embed: the last hidden layer of every channel,
    flattened to (batch, channels * hidden).
    """

    def __init__(
        self, seq_len: int, pred_len: int, channels: int, *, hidden: int = 256, layers: int = 2, dropout: float = 0.0
    ):
        super().__init__(seq_len, pred_len, channels)
        check_int("hidden", hidden)
        check_int("layers", layers)
        self.dropout = check_dropout(dropout)
        sizes = [seq_len] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(hidden, pred_len)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = x
        for layer in self.hidden:
            h = F.dropout(F.relu(layer(h)), self.dropout, self.training)
        return h  # (batch, channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x).flatten(1)
