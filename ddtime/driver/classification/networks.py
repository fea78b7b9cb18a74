"""Small classifiers used as encoders and experts, and functional (flat-parameter) calls.

``ConvNet``: ``depth`` blocks of conv3x3 -> instance norm (``GroupNorm(width, width)``, affine)
-> ReLU -> 2x2 average pooling, then a linear head, as in DM/MTT (width 128, depth 3 for 32x32
there; defaults here width 32, depth 2 for 8x8 inputs, leaving 2x2 maps). ``MLP``: ``depth``
Linear -> ReLU layers and a linear head, for feature vectors.

Every network has ``forward(x) -> logits [B, K]`` and ``embed(x) -> features [B, F]`` (the
input of the head). Flat parameters are the concatenation of ``named_parameters()`` in order.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvNet", "MLP", "build_network", "flat_params", "unflatten_params", "functional_logits",
           "functional_embed"]


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


def build_network(arch: str, sample_shape: tuple[int, ...], num_classes: int, *, seed: int | None = None,
                  **kwargs) -> nn.Module:
    """``arch`` in ``{"convnet", "mlp", "auto"}`` ("auto": ConvNet for images, MLP for vectors).

    ``seed`` fixes the initial weights (torch's default init drawn from a seeded generator).
    Extra keyword arguments (``width``, ``depth``) go to the network.
    """
    if arch == "auto":
        arch = "convnet" if len(sample_shape) == 3 else "mlp"
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


def flat_params(net: nn.Module) -> torch.Tensor:
    """Detached copy of all parameters, flattened in ``named_parameters()`` order: ``[P]``."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).clone()


def unflatten_params(net: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of ``flat [P]`` shaped like ``net``'s parameters (keeps the autograd graph)."""
    total = sum(p.numel() for p in net.parameters())
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(f"flat: expected a 1-D tensor of {total} parameters, got shape {tuple(flat.shape)}")
    out, offset = {}, 0
    for name, p in net.named_parameters():
        out[name] = flat[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


class _Embedding(nn.Module):
    """Wraps a network so that ``forward`` is its ``embed`` (for ``functional_call``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def functional_logits(net: nn.Module, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` with the parameters in ``flat [P]``: logits ``(batch, K)``."""
    return torch.func.functional_call(net, unflatten_params(net, flat), (x,))


def functional_embed(net: nn.Module, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``net.embed(x)`` with the parameters in ``flat [P]``: features ``(batch, F)``."""
    params = {f"net.{k}": v for k, v in unflatten_params(net, flat).items()}
    return torch.func.functional_call(_Embedding(net), params, (x,))
