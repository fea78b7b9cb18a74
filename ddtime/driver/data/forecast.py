"""Forecasting datasets as scaled ``[N, T]`` series with windowing, under both protocols.

Channels (``features``), as Time-Series-Library's loaders:

- ``M``: every variable. Files with the ``custom`` split rule (all but ETT, and the built-in
  "synthetic") are reordered to ``others + [target]`` (TSLib's Dataset_Custom); ETT files keep
  their column order (OT is already last). Without a target column the file order is kept.
- ``S``: the target alone (N = 1).
- ``MS``: every variable, target moved last. Models see and forecast all N channels; TSLib
  scores only the target, i.e. the last channel (N - 1) of the forecasts.

Protocols (borders in :mod:`ddtime.driver.data.protocols`; docs/driver.md compares them):

- ``standard``: StandardScaler (population std) fitted on the training rows only
  (``scale="train"``), then applied to the whole file; ``val`` and ``test`` carry ``seq_len`` look-back rows.
- ``condtsf``: matches RafaDD/CondTSF @ da389d0f (``buffer.py``, ``distill.py``): each
  channel z-scored with ``torch.std`` (unbiased) over the whole series, *test rows included*
  (the test range's statistics leak into every split's scaling, as in CondTSF's code;
  ``scale="train"`` fits on the training rows only, a leak-free variant); train = first
  ``int(0.7 L)`` rows, test = the rest, starting at the border without look-back; no validation
  split; windows are channel-independent ``[B * N, 1, L]``. CondTSF itself uses 24 -> 24 and
  window stride 4 (12 for the distillation's evaluation loaders); those are the caller's choice.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ddtime.driver.checks import check_choice, check_int
from ddtime.driver.data.csv_reader import SENTINELS, read_csv
from ddtime.driver.data.fetch import resolve_dataset
from ddtime.driver.data.generated import SYNTHETIC, generate_seasonal
from ddtime.driver.data.protocols import PROTOCOLS, condtsf_borders, standard_borders
from ddtime.driver.data.registry import REGISTRY, lookup, lookup_filename
from ddtime.driver.data.scaler import Scaler

FEATURES = ("M", "S", "MS")
#: rows the per-channel statistics are fitted on: the training rows, or the whole series (test included)
SCALES = ("train", "series")
#: each protocol's scaling: TSLib fits on train, CondTSF's code on the whole series
DEFAULT_SCALES = {"standard": "train", "condtsf": "series"}


@dataclass
class ForecastData:
    """Scaled series of one dataset: ``train (N, T_train)``, ``val (N, T_val + seq_len)`` (None under
    condtsf), ``test (N, T_test + seq_len)`` (``(N, T_test)`` under condtsf), float32.

    channels: names of the N series. borders: row range ``[start, end)`` of each split in the
    cleaned file (look-back included). scaler: maps ``(..., N, T)`` between scaled and raw units;
    scale: the rows it was fitted on ("train", or "series": the whole file, test rows included).
    source_sha256: sha256 of the CSV file's bytes (of the generated values for the built-in set).
    """

    name: str
    protocol: str
    seq_len: int
    pred_len: int
    stride: int
    channels: list[str]
    scaler: Scaler
    train: torch.Tensor
    val: torch.Tensor | None
    test: torch.Tensor
    features: str = "M"
    target: str = "OT"
    borders: dict[str, tuple[int, int]] = field(default_factory=dict)
    scale: str = "train"
    source_sha256: str = ""

    @property
    def window_channels(self) -> int:
        """Channels of a window, as the models see them: N, or 1 under condtsf (channel-independent
        windows; ``channels`` still lists all N)."""
        return 1 if self.protocol == "condtsf" else len(self.channels)

    def windows(self, split: str, *, stride: int | None = None) -> torch.Tensor:
        """Windows ``(B, N_w, seq_len + pred_len)`` of ``split`` ("train", "val", "test").

        Window b starts at step ``b * stride`` of the split's series (default stride: ``self.stride``);
        the first ``seq_len`` steps are the input, the rest the label. Under standard, N_w = N and the
        result is a strided view of the series. Under condtsf, N_w = 1 and B = windows * N: row
        ``b * N + n`` is channel n of window b, so ``.view(-1, N, L)`` restores the channel axis.
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        series = getattr(self, split)
        if series is None:
            raise ValueError(f"split 'val' does not exist under the {self.protocol} protocol")
        stride = check_int("stride", self.stride if stride is None else stride)
        length = self.seq_len + self.pred_len
        out = series.unfold(-1, length, stride).transpose(0, 1)
        return out.reshape(-1, 1, length) if self.protocol == "condtsf" else out



def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_frame(data, target: str | None, sentinels) -> tuple[str, str, pd.DataFrame, str]:
    """(name, split rule, frame, sha256 of the source) for a registry name, 'synthetic' / None, or a CSV path."""
    if data is None or (isinstance(data, str) and data.lower() == SYNTHETIC):
        frame = generate_seasonal()
        values = frame.drop(columns="date").to_numpy(np.float64)
        return SYNTHETIC, "custom", frame, hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
    if isinstance(data, str) and lookup(data) is not None:
        info = lookup(data)
        path = resolve_dataset(data)
        frame = read_csv(path, name=info.name, target=target, sentinels=sentinels)
        return info.name, info.split, frame, _file_sha256(path)
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be None, a dataset name or a path, got {type(data).__name__}")
    path = pathlib.Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"data={str(data)!r} is neither a file nor a dataset name "
                                f"({', '.join(REGISTRY)}, {SYNTHETIC})")
    info = lookup_filename(path.name)
    frame = read_csv(path, target=target, sentinels=sentinels)
    return path.stem, info.split if info else "custom", frame, _file_sha256(path)


def _select_channels(variables: list[str], features: str, target: str, rule: str, name: str) -> list[str]:
    if target not in variables:
        if features != "M":
            raise ValueError(f"target={target!r} is not a numeric column of {name}; columns: {variables}")
        return variables
    if features == "S":
        return [target]
    if features == "MS" or rule == "custom":
        return [c for c in variables if c != target] + [target]
    return variables


def load_forecasting(data: str | os.PathLike | None = None, *, protocol: str = "standard", features: str = "M",
                     target: str = "OT", seq_len: int = 96, pred_len: int = 96, stride: int = 1,
                     sentinels: tuple[float, ...] = SENTINELS, scale: str | None = None) -> ForecastData:
    """Load, split and scale a forecasting dataset.

    data: None or "synthetic" (the built-in :func:`generate_seasonal` series, split 7:1:2), a
    registry name (found via the shared folder, the cache or a verified download), or a CSV path
    (split like the registry file of the same name, else 7:1:2). sentinels: cell values read as
    missing (see :func:`read_csv`). scale: the rows each channel's mean and std are fitted on,
    "train" (the training rows) or "series" (the whole file, test rows included); None: the
    protocol's (:data:`DEFAULT_SCALES`: "train" standard, "series" condtsf as CondTSF's code).
    The estimator stays the protocol's (population std standard, unbiased condtsf). Raises
    ValueError when a split holds no full window.
    """
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("features", features, FEATURES)
    if not isinstance(target, str):
        raise TypeError(f"target: expected a column name (str), got {type(target).__name__}")
    seq_len, pred_len = check_int("seq_len", seq_len), check_int("pred_len", pred_len)
    stride = check_int("stride", stride)
    scale = check_choice("scale", DEFAULT_SCALES[protocol] if scale is None else scale, SCALES)

    name, rule, frame, source_sha256 = _load_frame(data, target if features != "M" else None, sentinels)
    channels = _select_channels([c for c in frame.columns if c != "date"], features, target, rule, name)
    values = torch.from_numpy(frame[channels].to_numpy(np.float64).T.copy())
    n_rows = values.shape[1]
    try:
        borders = standard_borders(n_rows, rule, seq_len) if protocol == "standard" else condtsf_borders(n_rows)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    window = seq_len + pred_len
    for split, (start, end) in borders.items():
        if end - start < window:
            raise ValueError(f"{name}: the {protocol} {split} split has {end - start} rows, fewer than "
                             f"seq_len + pred_len = {window}")
    fit_rows = values[:, borders["train"][0]:borders["train"][1]] if scale == "train" else values
    scaler = Scaler.fit(fit_rows, unbiased=protocol == "condtsf")
    scaled = scaler.transform(values).to(torch.float32)
    parts = {split: scaled[:, start:end].clone() for split, (start, end) in borders.items()}
    return ForecastData(name=name, protocol=protocol, seq_len=seq_len, pred_len=pred_len, stride=stride,
                        channels=channels, scaler=scaler, train=parts["train"], val=parts.get("val"),
                        test=parts["test"], features=features, target=target, borders=borders, scale=scale,
                        source_sha256=source_sha256)
