"""Expert trajectories of classifiers: per-epoch flat parameters of N independently trained networks.

TGDD's default is N = 5 trajectories; each holds M = epochs + 1 snapshots (snapshot 0 is the
initial weights). Expert ``i`` starts from weights seeded with ``seed + i`` and sees its own
data order; training follows :func:`ddtime.driver.classification.evaluate.train_classifier` without
the learning-rate decay (constant-lr trajectories, as MTT's buffers).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.classification.data import ClassificationData
from ddtime.driver.classification.evaluate import accuracy, train_classifier
from ddtime.driver.classification.networks import build_network, flat_params

__all__ = ["ExpertTrajectories", "train_trajectories"]


@dataclass
class ExpertTrajectories:
    """``snapshots [N, M, P]``: N trajectories of M flat-parameter snapshots of ``build_network(arch, ...)``.

    Attributes:
        arch, sample_shape, num_classes, net_kwargs: rebuild the template network with :meth:`network`.
        snapshots: float32 ``[N, M, P]``.
        test_acc: final test accuracy of each expert (for reports).
    """

    arch: str
    sample_shape: tuple[int, ...]
    num_classes: int
    snapshots: torch.Tensor
    net_kwargs: dict = field(default_factory=dict)
    test_acc: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.snapshots.dim() != 3 or self.snapshots.shape[1] < 1:
            raise ValueError(f"snapshots: expected [N, M, P] with M >= 1, got shape {tuple(self.snapshots.shape)}")
        n_params = sum(p.numel() for p in self.network().parameters())
        if self.snapshots.shape[2] != n_params:
            raise ValueError(f"snapshots: expected P = {n_params} parameters of {self.arch}, "
                             f"got {self.snapshots.shape[2]}")

    @property
    def num_trajectories(self) -> int:
        return self.snapshots.shape[0]

    @property
    def num_snapshots(self) -> int:
        return self.snapshots.shape[1]

    def network(self) -> torch.nn.Module:
        """A template network of the experts' architecture (weights irrelevant; use with flat params)."""
        return build_network(self.arch, self.sample_shape, self.num_classes, seed=0, **self.net_kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file atomically (``path.tmp``, fsync, ``os.replace``)."""
        from safetensors.torch import save

        meta = {"arch": self.arch, "sample_shape": json.dumps(list(self.sample_shape)),
                "num_classes": str(self.num_classes), "net_kwargs": json.dumps(self.net_kwargs),
                "test_acc": json.dumps(self.test_acc)}
        blob = save({"snapshots": self.snapshots.contiguous()}, metadata=meta)
        atomic_write_bytes(path, blob)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExpertTrajectories":
        """Read a file written by :meth:`save`; a truncated or foreign file raises ``RuntimeError`` naming it."""
        from safetensors import safe_open

        try:
            with safe_open(os.fspath(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                snapshots = fh.get_tensor("snapshots")
            return cls(meta["arch"], tuple(json.loads(meta["sample_shape"])), int(meta["num_classes"]), snapshots,
                       json.loads(meta["net_kwargs"]), json.loads(meta["test_acc"]))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise RuntimeError(f"{os.fspath(path)}: not a readable expert-trajectory file ({exc})") from exc


def train_trajectories(data: ClassificationData, *, arch: str = "auto", num_trajectories: int = 5, epochs: int = 20,
                       lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 64,
                       seed: int = 0, net_kwargs: dict | None = None, quiet: bool = False) -> ExpertTrajectories:
    """Train ``num_trajectories`` experts on ``data``'s training split for ``epochs`` epochs each.

    Returns :class:`ExpertTrajectories` with ``snapshots [num_trajectories, epochs + 1, P]``.
    """
    if num_trajectories < 1 or epochs < 1:
        raise ValueError(f"num_trajectories, epochs: expected >= 1, got {num_trajectories}, {epochs}")
    net_kwargs = dict(net_kwargs or {})
    trajs, accs = [], []
    for i in tqdm(range(num_trajectories), desc="experts", disable=quiet):
        net = build_network(arch, data.sample_shape, data.num_classes, seed=seed + i, **net_kwargs)
        snaps = [flat_params(net)]
        train_classifier(net, data.train_x, data.train_y, epochs=epochs, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, batch_size=batch_size, seed=seed + i, decay_at_half=False,
                         on_epoch_end=lambda _epoch, n: snaps.append(flat_params(n)))
        trajs.append(torch.stack(snaps))
        accs.append(accuracy(net, data.test_x, data.test_y))
    resolved = "convnet" if arch == "auto" and len(data.sample_shape) == 3 else ("mlp" if arch == "auto" else arch)
    return ExpertTrajectories(resolved, data.sample_shape, data.num_classes, torch.stack(trajs), net_kwargs, accs)
