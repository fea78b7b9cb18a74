"""Presets: one name that sets every default of a published setting (explicit options still win).

``condtsf`` is CondTSF's code (RafaDD/CondTSF ``buffer.py``, ``distill.py``, ``model/gcond.py``):

* data: the ``condtsf`` protocol (each channel z-scored over the whole series, test rows included, as
  CondTSF's code; ``--scale train`` fits on the training rows only; first 70% train,
  the rest test, channel-independent windows), 24 -> 24, training windows at stride 4;
* experts: 40 x 80 epochs, SGD lr 5e-4 momentum 0.9, batches of 64 windows with all their
  channels (ddtime's expert recipe under ``condtsf``); FTD's experts: adaptive GSAM around that
  SGD, rho 2.0, alpha 0.4 (``buffer.py --FTD 1``);
* synthetic set: the ``series`` representation, one stretch per channel of
  ``int(rows * rate)`` steps, ``rate`` CondTSF's condensing rate of the dataset
  (:data:`CONDENSING_RATES`), cut into windows at stride 4 (ETTh1: 69 steps, 6 windows a channel);
* 300 iterations; DATM without learnable soft labels (CondTSF's DATM has none); FTD without a
  moving average of the set (``ema_decay=0``) and with the GSAM experts; the unrolled student
  batches 64 time windows with all their channels;
* CondTSF's update: its teacher drawn from every 5th SGD expert (experts 0, 5, ..., 35: the first of
  each of CondTSF's 8 buffer files) at its final epoch, for FTD too (``--condtsf-teacher-every 5
  --condtsf-teacher-optimizer sgd``);
* evaluation: 5 students, SGD lr 1e-4 momentum 0.9, 251 epochs (``utils.evaluate_synset``'s
  ``range(Epoch + 1)``; ``--eval-epochs``), test windows at stride 12 (``distill.py``;
  ``--test-stride``); the set is selected every 50 iterations on the last 10% of the training
  windows (which the experts also train on), never on test (CondTSF's code selects on test).

ddtime's own FTD (EMA 0.99, SAM experts rho 0.05) under the preset:
``--method-option ema_decay=0.99 --method-option expert_optimizer=sam``.
``standard`` is TSLib's 96 -> 96 protocol with one optimiser throughout, so that a set is judged by
the students it was matched to (``bench/results/standard_recipe.md`` has the measurements that
chose it):

* data: the ``standard`` protocol (TSLib's splits, 96 -> 96), S = 10 windows;
* experts: 40 x 20 epochs, SGD lr 1e-2 momentum 0.9, batch 64 (at the usual 5e-4 an expert is still at
  test MSE 0.63 after the 6 epochs MTT matches, worse than 10 random windows; at 1e-2 it is at
  0.44 after two epochs and ends at 0.39, the full-data model's level, so every matched segment
  holds useful models);
* unrolled student (MTT, DATM): plain SGD, K = 20 steps, its lr learned (``learn_lr``) from 1e-2 (on
  ETTh1 it rises to about 0.16; a fixed 0.1 scored 0.522 against the learned rate's 0.512), the rest
  MTT's / DATM's defaults, except that DATM moves its start-epoch window every 100 iterations instead
  of 40 (``window_every``; from [0, 2) to [2, 4) over 300 iterations): with the default schedule the
  window reaches [7, 9), the selected set scored 0.642 on ETTh1 against 10 random windows' 0.553,
  with 100 it scored 0.543 (DATM's own finding: small sets should match early trajectories);
* evaluation: 5 students, SGD lr 1e-2 momentum 0.9 (the experts' optimiser and rate), batch 64, at
  most 300 epochs, early stopping on the validation split (patience 20); selection every 50
  iterations on the validation split with the same students.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "CONDENSING_RATES", "preset_defaults", "series_windows_per_channel", "condtsf_samples"]

#: CondTSF's ``condensing_rate`` ("standard") per dataset, by ddtime registry name.
#: ``synthetic`` (the built-in generated dataset, 4000 rows) is ddtime's choice: 70 steps, 6 windows a
#: channel, as ETTh1's 69.
CONDENSING_RATES = {"ETTh1": 4e-3, "ETTh2": 4e-3, "ETTm1": 2e-3, "ETTm2": 2e-3, "exchange_rate": 1e-2,
                    "weather": 2e-3, "electricity": 3e-3, "traffic": 4e-3, "synthetic": 1.75e-2}

PRESETS: dict[str, dict[str, Any]] = {
    "condtsf": {"protocol": "condtsf", "seq_len": 24, "pred_len": 24, "representation": "series", "series_stride": 4,
                "iterations": 300, "num_experts": 40, "expert_epochs": 80, "students": 5, "select_every": 50,
                "eval_epochs": 251, "test_stride": 12, "condtsf_teacher_every": 5, "condtsf_teacher_optimizer": "sgd",
                "method_defaults": {"datm": {"soft_labels": False},
                                    "ftd": {"ema_decay": 0.0, "expert_optimizer": "gsam"}}},
    "standard": {"protocol": "standard", "seq_len": 96, "pred_len": 96, "representation": "windows", "samples": 10,
                 "iterations": 300, "num_experts": 40, "expert_epochs": 20, "expert_lr": 1e-2, "students": 5,
                 "select_every": 50, "eval_optimizer": "sgd", "eval_lr": 1e-2,
                 "method_defaults": {"mtt": {"student_lr": 1e-2, "learn_lr": True},
                                     "datm": {"student_lr": 1e-2, "learn_lr": True, "window_every": 100}}},
}


def preset_defaults(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s option values."""
    if name not in PRESETS:
        raise ValueError(f"--preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].items()}


def series_windows_per_channel(dataset: str, rows: int, *, seq_len: int, pred_len: int, stride: int) -> int:
    """Windows per channel of CondTSF's synthetic stretch of ``int(rows * rate)`` steps (at least 1).

    ``rows``: the whole file's length (CondTSF multiplies the full series length by the rate).
    A dataset without a rate in :data:`CONDENSING_RATES` is an error: CondTSF gives it no size.
    """
    rate = CONDENSING_RATES.get(dataset)
    if rate is None:
        raise ValueError(f"dataset: {dataset!r} has no CondTSF condensing rate (known: "
                         f"{', '.join(sorted(CONDENSING_RATES))}); give the synthetic set's size with --samples "
                         "or add the rate to ddtime.driver.presets.CONDENSING_RATES")
    steps = int(rows * rate)
    return max(1, (steps - seq_len - pred_len) // stride + 1)


def condtsf_samples(data, *, stride: int) -> tuple[int, int]:
    """``(windows per channel, channels)`` of CondTSF's synthetic set for ``data`` (a ForecastData).

    The set holds their product of windows: under the ``condtsf`` protocol one stretch per channel;
    under ``standard`` the windows carry every channel, so ``channels`` is 1.
    """
    rows = max(end for _, end in data.borders.values())
    per_channel = series_windows_per_channel(data.name, rows, seq_len=data.seq_len, pred_len=data.pred_len,
                                             stride=stride)
    return per_channel, (len(data.channels) if data.protocol == "condtsf" else 1)
