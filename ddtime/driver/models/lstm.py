"""Channel-independent LSTM over the look-back window.

The recurrence is written out with two linear maps per layer instead of ``nn.LSTM``: the cuDNN
kernel has no double backward and ``nn.LSTM`` keeps flattened weight copies, both of which
break trajectory matching through ``functional_call``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel, check_dropout


class LSTMLayer(nn.Module):
    """One LSTM layer (PyTorch gate order i, f, g, o). x: (batch, time, in) -> (batch, time, hidden)."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.input_map = nn.Linear(input_size, 4 * hidden)
        self.hidden_map = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates_in = self.input_map(x)
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (gates_in[:, t] + self.hidden_map(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class LSTM(ForecastModel):
    """Per channel: a ``layers``-deep LSTM of width ``hidden`` reads the look-back one step at a
    time; a linear head maps the last hidden state to the horizon.

    Weights are shared across channels. embed: the last hidden state of every channel,
    (batch, channels * hidden).
    """

    def __init__(
        self, seq_len: int, pred_len: int, channels: int, *, hidden: int = 64, layers: int = 1, dropout: float = 0.0
    ):
        super().__init__(seq_len, pred_len, channels)
        check_int("hidden", hidden)
        check_int("layers", layers)
        self.dropout = check_dropout(dropout)
        self.layers = nn.ModuleList(LSTMLayer(1 if k == 0 else hidden, hidden) for k in range(layers))
        self.head = nn.Linear(hidden, pred_len)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        batch = x.shape[0]
        h = x.reshape(batch * self.channels, self.seq_len, 1)
        for k, layer in enumerate(self.layers):
            if k:
                h = F.dropout(h, self.dropout, self.training)
            h = layer(h)
        return h[:, -1].reshape(batch, self.channels, -1)  # (batch, channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x).flatten(1)
