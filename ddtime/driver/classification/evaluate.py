"""Training and testing classifiers; evaluation of a (synthetic) training set.

Recipe (DM/MTT's ``evaluate_synset`` without augmentation): SGD, momentum 0.9, weight decay
5e-4, cross-entropy, learning rate divided by 10 at half of the epochs, mini-batches of 256
reshuffled every epoch from a seeded generator.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ddtime.driver.classification.data import ClassificationData
from ddtime.driver.classification.networks import build_network

__all__ = ["train_classifier", "accuracy", "evaluate_synthetic"]


def train_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 0.01,
                     momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 256, seed: int = 0,
                     decay_at_half: bool = True, on_epoch_end: Callable[[int, nn.Module], None] | None = None,
                     quiet: bool = True) -> nn.Module:
    """Train ``net`` in place on ``x [N, ...]``, ``y [N]``; returns ``net``.

    ``on_epoch_end(epoch, net)`` is called after every epoch (epoch counts from 1).
    """
    if epochs < 0:
        raise ValueError(f"epochs: expected >= 0, got {epochs}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"y: expected one label per sample of x ({x.shape[0]} samples, non-empty), got {y.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    net.train()
    for epoch in tqdm(range(1, epochs + 1), desc="train", disable=quiet, leave=False):
        if decay_at_half and epoch == epochs // 2 + 1:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        order = torch.randperm(x.shape[0], generator=g)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start: start + batch_size]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, net)
    return net


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Fraction of ``x [N, ...]`` whose arg-max logit equals ``y [N]``."""
    net.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        correct += int((net(x[start: start + batch_size]).argmax(1) == y[start: start + batch_size]).sum())
    net.train()
    return correct / max(1, x.shape[0])


def evaluate_synthetic(x: torch.Tensor, y: torch.Tensor, data: ClassificationData, *, arch: str = "auto",
                       seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int = 300, lr: float = 0.01,
                       batch_size: int = 256, net_kwargs: dict | None = None, quiet: bool = True) -> dict:
    """Train one fresh classifier per seed on ``x [S, ...]``, ``y [S]`` and test on ``data``'s test split.

    Returns ``{"mean": float, "std": float, "accs": [float, ...]}`` (test accuracy; std with
    Bessel's correction, 0 for one seed).
    """
    if tuple(x.shape[1:]) != data.sample_shape:
        raise ValueError(f"x: expected samples of shape {data.sample_shape}, got {tuple(x.shape[1:])}")
    if len(seeds) == 0:
        raise ValueError("seeds: expected at least one seed")
    x, y = x.detach(), y.detach()
    accs = []
    for seed in tqdm(seeds, desc="evaluate", disable=quiet, leave=False):
        net = build_network(arch, data.sample_shape, data.num_classes, seed=seed, **(net_kwargs or {}))
        train_classifier(net, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        accs.append(accuracy(net, data.test_x, data.test_y))
    t = torch.tensor(accs, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(accs) > 1 else 0.0, "accs": accs}
