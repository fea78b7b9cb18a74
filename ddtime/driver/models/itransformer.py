"""iTransformer (Liu et al., ICLR 2024), compact version.

Each variate is one token: its whole (instance-normalised) look-back is embedded linearly to
``d_model``, a transformer encoder attends across variates, a final LayerNorm follows, and a
linear projection maps each token to the horizon, which is then de-normalised. Time-stamp
covariate tokens of the reference code are not used (the models see values only).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.models.base import ForecastModel, InstanceNorm, check_dropout
from ddtime.driver.models.transformer import Encoder


class ITransformer(ForecastModel):
    """embed: the encoded variate tokens (the projection's input), (batch, channels * d_model)."""

    adam_lr = 1e-4

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        channels: int,
        *,
        d_model: int = 128,
        n_heads: int = 8,
        d_ff: int = 128,
        layers: int = 2,
        dropout: float = 0.0,
        use_norm: bool = True,
    ):
        super().__init__(seq_len, pred_len, channels)
        if not isinstance(use_norm, bool):
            raise TypeError(f"use_norm must be a bool, got {type(use_norm).__name__}")
        self.use_norm = use_norm
        self.dropout = check_dropout(dropout)
        self.encoder = Encoder(d_model, n_heads, d_ff, layers, dropout)
        self.embedding = nn.Linear(seq_len, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, pred_len)

    def _features(self, x: torch.Tensor):
        self.check_input(x)
        stats = None
        if self.use_norm:
            x, stats = InstanceNorm.normalize(x)
        tokens = F.dropout(self.embedding(x), self.dropout, self.training)  # (batch, channels, d_model)
        return self.norm(self.encoder(tokens)), stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, stats = self._features(x)
        out = self.projection(tokens)
        return InstanceNorm.denormalize(out, stats) if self.use_norm else out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)[0].flatten(1)
