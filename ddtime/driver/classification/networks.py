"""Small classifiers used as encoders and experts.

``ConvNet``: ``depth`` blocks of conv3x3 -> instance norm (``GroupNorm(width, width)``, affine)
-> ReLU -> 2x2 average pooling, then a linear head, as in DM/MTT (width 128, depth 3 for 32x32
there; defaults here width 32, depth 2 for 8x8 inputs, leaving 2x2 maps). ``MLP``: ``depth``
Linear -> ReLU layers and a linear head, for feature vectors.

Every network has ``forward(x) -> logits [B, K]`` and ``embed(x) -> features [B, F]`` (the
input of the head). Flat-parameter calls are the forecasting models' (:mod:`ddtime.driver.models.params`):
``flat_params(net) -> [P]`` in ``named_parameters()`` order, ``functional_forward(net, flat, x)``
for the logits and ``functional_forward(net, flat, x, method="embed")`` for the features.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvNet", "MLP", "build_network", "resolve_arch"]


class ConvNet(nn.Module):
    """conv-instancenorm-relu-avgpool blocks + linear head.

    Args:
        in_shape: ``(C, H, W)`` of one input image; H and W must be divisible by ``2 ** depth``.
        num_classes: K.
        width: channels of every block.
        depth: number of blocks.
    Shapes: x ``(batch, C, H, W)`` -> embed ``(batch, width * H * W / 4 ** depth)`` -> logits ``(batch, K)``.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, *, width: int = 32, depth: int = 2):
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"in_shape: expected (C, H, W), got {in_shape!r}")
        c, h, w = in_shape
        if depth < 1 or h % (2 ** depth) or w % (2 ** depth):
            raise ValueError(f"depth: expected H={h} and W={w} divisible by 2**depth, got depth={depth}")
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                       nn.AvgPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.in_shape = tuple(in_shape)
        self.embed_dim = width * h * w
        self.head = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, C, H, W)`` -> ``(batch, embed_dim)``."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, C, H, W)`` -> logits ``(batch, num_classes)``."""
        return self.head(self.embed(x))


class MLP(nn.Module):
    """``depth`` Linear-ReLU layers of ``width`` units + linear head.

    Shapes: x ``(batch, D)`` -> embed ``(batch, width)`` -> logits ``(batch, K)``.
    """

    def __init__(self, in_features: int, num_classes: int, *, width: int = 128, depth: int = 2):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth: expected >= 1, got {depth}")
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.features = nn.Sequential(*layers)
        self.in_shape = (in_features,)
        self.embed_dim = width
        self.head = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, D)`` -> ``(batch, width)``."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, D)`` -> logits ``(batch, num_classes)``."""
        return self.head(self.embed(x))


def resolve_arch(arch: str, sample_shape: tuple[int, ...]) -> str:
    """``"auto"`` -> ``"convnet"`` for image samples ``(C, H, W)``, else ``"mlp"``; other names unchanged."""
    if arch == "auto":
        return "convnet" if len(sample_shape) == 3 else "mlp"
    return arch


def build_network(arch: str, sample_shape: tuple[int, ...], num_classes: int, *, seed: int | None = None,
                  **kwargs) -> nn.Module:
    """``arch`` in ``{"convnet", "mlp", "auto"}`` ("auto": ConvNet for images, MLP for vectors).

    ``seed`` fixes the initial weights (torch's default init drawn from a seeded generator).
    Extra keyword arguments (``width``, ``depth``) go to the network.
    """
    arch = resolve_arch(arch, sample_shape)
    if arch == "convnet":
        if len(sample_shape) != 3:
            raise ValueError(f"arch: 'convnet' needs image samples (C, H, W), got sample shape {sample_shape}")
        cls, first = ConvNet, tuple(sample_shape)
    elif arch == "mlp":
        cls, first = MLP, int(torch.Size(sample_shape).numel())
    else:
        raise ValueError(f"arch: expected 'convnet', 'mlp' or 'auto', got {arch!r}")
    if seed is None:
        return cls(first, num_classes, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(first, num_classes, **kwargs)
