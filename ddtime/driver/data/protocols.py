"""Split borders of the two data protocols, ``standard`` (Time-Series-Library) and ``condtsf`` (CondTSF's code).

``standard`` follows ``data_provider/data_loader.py`` of Time-Series-Library (same in Autoformer
and LTSF-Linear): ETTh 12/4/4 months of 30 days (8640/2880/2880 rows, later rows unused),
ETTm the same times 4, other files chronological with ``num_train = int(N * 0.7)``,
``num_test = int(N * 0.2)``, ``num_val = N - num_train - num_test``. The validation and test
ranges start ``seq_len`` rows before their border so that their first window forecasts the
first row after the border.

``condtsf`` follows CondTSF's ``buffer.py`` / ``distill.py`` (RafaDD/CondTSF @ da389d0f):
train ``[0, int(L * 0.7))``, test ``[int(L * 0.7), L)`` with no look-back before the border
and no validation split.
"""
from __future__ import annotations

PROTOCOLS = ("standard", "condtsf")
#: default look-back = horizon: 96 (TSLib) and 24 (CondTSF's code)
DEFAULT_LENGTHS = {"standard": 96, "condtsf": 24}
#: step between training windows: every window (TSLib), every 4th (CondTSF's loaders)
TRAIN_STRIDES = {"standard": 1, "condtsf": 4}
SPLIT_RULES = ("ett_hour", "ett_minute", "custom")
_ETT_HOUR = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)


def split_sizes(n_rows: int, rule: str) -> tuple[int, int, int]:
    """(train, val, test) row counts of the standard protocol for a file of ``n_rows`` rows."""
    if rule not in SPLIT_RULES:
        raise ValueError(f"rule must be one of {SPLIT_RULES}, got {rule!r}")
    if rule == "custom":
        num_train, num_test = int(n_rows * 0.7), int(n_rows * 0.2)
        return num_train, n_rows - num_train - num_test, num_test
    scale = 1 if rule == "ett_hour" else 4
    sizes = tuple(s * scale for s in _ETT_HOUR)
    if n_rows < sum(sizes):
        raise ValueError(f"the {rule} split needs at least {sum(sizes)} rows, the file has {n_rows}")
    return sizes


def standard_borders(n_rows: int, rule: str, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of train, val and test; val and test include ``seq_len`` look-back rows."""
    num_train, num_val, num_test = split_sizes(n_rows, rule)
    if seq_len > num_train:
        raise ValueError(f"seq_len={seq_len} exceeds the {num_train} training rows of the {rule} split")
    val_end = num_train + num_val
    return {"train": (0, num_train), "val": (num_train - seq_len, val_end),
            "test": (val_end - seq_len, val_end + num_test)}


def condtsf_borders(n_rows: int) -> dict[str, tuple[int, int]]:
    """Row ranges of CondTSF's split: first 70% train, last 30% test."""
    cut = int(n_rows * 0.7)
    return {"train": (0, cut), "test": (cut, n_rows)}
