"""Labelled classification data: the scikit-learn digits set, or any tensor with labels.

Samples are images ``[N, C, H, W]`` or feature vectors ``[N, D]``; labels are ``int64``
class indices ``[N]`` in ``0 .. num_classes - 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ddtime.driver.checks import check_int

__all__ = ["ClassificationData", "load_digits", "stratified_split"]


def _check_xy(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}_x: expected a floating-point tensor, got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}")
    if x.dim() not in (2, 4):
        raise ValueError(f"{name}_x: expected [N, C, H, W] images or [N, D] vectors, got shape {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise TypeError(f"{name}_y: expected an int64 tensor [N], got {getattr(y, 'dtype', type(y).__name__)} "
                        f"of shape {tuple(getattr(y, 'shape', ()))}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}_y: expected {x.shape[0]} labels (one per sample of {name}_x), got {y.shape[0]}")


@dataclass
class ClassificationData:
    """A train/test split of labelled samples.

    Attributes:
        train_x: ``[N_train, C, H, W]`` or ``[N_train, D]`` float tensor.
        train_y: ``[N_train]`` int64 labels.
        test_x, test_y: the test split, same layout.
        num_classes: number of classes; every label lies in ``[0, num_classes)``.
        name: a label for reports.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str = "data"

    def __post_init__(self) -> None:
        _check_xy(self.train_x, self.train_y, "train")
        _check_xy(self.test_x, self.test_y, "test")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"test_x: expected per-sample shape {tuple(self.train_x.shape[1:])} like train_x, "
                             f"got {tuple(self.test_x.shape[1:])}")
        check_int("num_classes", self.num_classes)
        for split, y in (("train", self.train_y), ("test", self.test_y)):
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{split}_y: expected labels in [0, {self.num_classes}), "
                                 f"got range [{int(y.min())}, {int(y.max())}]")
        missing = sorted(set(range(self.num_classes)) - set(self.train_y.tolist()))
        if missing:
            raise ValueError(f"train_y: every class needs training samples, classes {missing} have none")

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, *, test_fraction: float = 0.2, seed: int = 0,
                     num_classes: int | None = None, name: str = "data") -> "ClassificationData":
        """Split one labelled set ``x [N, ...]``, ``y [N]`` into train/test (stratified, seeded)."""
        _check_xy(x, y, "input")
        k = int(y.max()) + 1 if num_classes is None else num_classes
        train_idx, test_idx = stratified_split(y, test_fraction=test_fraction, seed=seed)
        return cls(x[train_idx], y[train_idx], x[test_idx], y[test_idx], k, name)

    def holdout(self, fraction: float = 0.2, *, seed: int = 0) -> "ClassificationData":
        """A train/validation split carved from the training split alone (stratified, seeded):
        ``round(fraction * n_c)`` training samples of each class become the returned set's ``test``
        split (the validation set); the test split is left out. For tuning without touching test."""
        train_idx, val_idx = stratified_split(self.train_y, test_fraction=fraction, seed=seed)
        return ClassificationData(self.train_x[train_idx], self.train_y[train_idx], self.train_x[val_idx],
                                  self.train_y[val_idx], self.num_classes, f"{self.name}-validation")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample shape: ``(C, H, W)`` or ``(D,)``."""
        return tuple(self.train_x.shape[1:])

    def class_indices(self) -> list[torch.Tensor]:
        """Indices of the training samples of each class: ``num_classes`` int64 tensors."""
        return [torch.nonzero(self.train_y == c).flatten() for c in range(self.num_classes)]

    def random_subset(self, per_class: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` random training samples of every class (without replacement).

        Returns ``(x [num_classes * per_class, ...], y [num_classes * per_class])``, class-major.
        """
        check_int("per_class", per_class)
        g = torch.Generator().manual_seed(seed)
        xs, ys = [], []
        for c, idx in enumerate(self.class_indices()):
            if per_class > idx.numel():
                raise ValueError(f"per_class: class {c} has only {idx.numel()} training samples, asked for {per_class}")
            pick = idx[torch.randperm(idx.numel(), generator=g)[:per_class]]
            xs.append(self.train_x[pick])
            ys.append(self.train_y[pick])
        return torch.cat(xs), torch.cat(ys)


def stratified_split(y: torch.Tensor, *, test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded per-class split of sample indices: ``round(test_fraction * n_c)`` of each class go to test.

    Returns ``(train_idx, test_idx)``, each sorted int64.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_test = int(round(test_fraction * idx.numel()))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_digits(*, seed: int = 0, test_fraction: float = 0.2, flatten: bool = False) -> ClassificationData:
    """scikit-learn's 8x8 handwritten digits (1797 samples, 10 classes), split 80/20 by ``seed``.

    Pixels (0..16) are standardised with the training split's mean and std (one value each,
    as one channel). ``flatten=False`` gives images ``[N, 1, 8, 8]``; ``True`` gives vectors ``[N, 64]``.
    Needs scikit-learn (imported here, only by this loader); no download.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("load_digits: needs scikit-learn (pip install scikit-learn)") from exc
    raw = _sk_load_digits()
    x = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1)
    y = torch.as_tensor(raw.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(y, test_fraction=test_fraction, seed=seed)
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = (x - mean) / std
    if flatten:
        x = x.flatten(1)
    return ClassificationData(x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10, "digits")
