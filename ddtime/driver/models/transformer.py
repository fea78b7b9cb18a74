"""Transformer encoder written with explicit attention.

``nn.TransformerEncoderLayer`` may take fused fast paths and ``scaled_dot_product_attention``
may pick flash / memory-efficient kernels; neither supports double backward. This encoder uses
plain matrix products and softmax, so it works under ``functional_call`` with ``create_graph``.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import check_dropout


class MultiHeadAttention(nn.Module):
    """Full self-attention. x: (batch, tokens, d_model) -> (batch, tokens, d_model)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        batch, tokens, d_model = t.shape
        return t.reshape(batch, tokens, self.n_heads, d_model // self.n_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        attn = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        return self.out((attn @ v).transpose(1, 2).reshape(x.shape))


class EncoderLayer(nn.Module):
    """Post-norm encoder layer (as in PatchTST and iTransformer): x + attn -> norm, x + ffn -> norm.

    LayerNorm throughout (PatchTST's default BatchNorm would keep running statistics, which
    functional trajectory matching cannot carry).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + F.dropout(self.attention(x), self.dropout, self.training))
        ff = self.ff2(F.dropout(F.gelu(self.ff1(x)), self.dropout, self.training))
        return self.norm2(x + F.dropout(ff, self.dropout, self.training))


class Encoder(nn.Module):
    """A stack of ``layers`` encoder layers. x: (batch, tokens, d_model) -> same shape."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, layers: int, dropout: float = 0.0):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("d_ff", d_ff), ("layers", layers)):
            check_int(name, value)
        dropout = check_dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
