"""PatchTST (Nie et al., ICLR 2023), compact supervised version.

Channel-independent: each channel is instance-normalised (RevIN without affine), cut into
patches of ``patch_len`` with ``stride`` after padding the end with ``stride`` copies of the
last value, every patch is embedded linearly plus a learnable position embedding, a transformer
encoder runs over the patches, and a flatten head maps all patch tokens to the horizon, which is
then de-normalised. Weights are shared across channels. Differences from the reference code:
LayerNorm instead of BatchNorm in the encoder, dropout 0 by default. A look-back shorter than
one patch is padded at the end to ``patch_len`` first.
"""
import torch
from torch import nn

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel, InstanceNorm
from ddtime.driver.models.transformer import Encoder


class PatchTST(ForecastModel):
    """embed: the encoded patch tokens of every channel (the flatten head's input),
    (batch, channels * n_patches * d_model)."""

    adam_lr = 1e-4

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        channels: int,
        *,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int = 128,
        layers: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__(seq_len, pred_len, channels)
        self.patch_len = check_int("patch_len", patch_len)
        self.stride = check_int("stride", stride)
        self.encoder = Encoder(d_model, n_heads, d_ff, layers, dropout)
        self.padded_len = max(seq_len, patch_len) + stride
        self.n_patches = (self.padded_len - patch_len) // stride + 1
        self.patch_embedding = nn.Linear(patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.head = nn.Linear(self.n_patches * d_model, pred_len)

    def _features(self, x: torch.Tensor):
        self.check_input(x)
        z, stats = InstanceNorm.normalize(x)
        pad = self.padded_len - self.seq_len
        z = torch.cat([z, z[..., -1:].expand(*z.shape[:-1], pad)], dim=-1)
        patches = z.unfold(-1, self.patch_len, self.stride)  # (batch, channels, n_patches, patch_len)
        batch = x.shape[0]
        tokens = self.patch_embedding(patches).reshape(batch * self.channels, self.n_patches, -1)
        tokens = self.encoder(tokens + self.position)
        return tokens.reshape(batch, self.channels, -1), stats  # (batch, channels, n_patches * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, stats = self._features(x)
        return InstanceNorm.denormalize(self.head(features), stats)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)[0].flatten(1)
