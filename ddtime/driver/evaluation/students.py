"""Fresh students trained on a set of windows alone: the recipes, the training, model selection.

Student recipes (everything switchable):

* ``condtsf``: SGD lr 1e-4, momentum 0.9, batch 64, 250 epochs, constant rate (CondTSF's code;
  its ``utils.evaluate_synset`` runs ``range(Epoch + 1)``, 251 epochs, which the ``condtsf`` preset sets).
* ``standard``: Adam with early stopping on the validation split (best weights restored), batch
  64, at most 300 epochs, patience 20, constant lr 1e-3. TSLib's recipe (lr 1e-4 halved every
  epoch, patience 3) assumes hundreds of steps per epoch; on a 10-window set an epoch is one
  step, so the rate stays constant and patience counts more epochs.
* ``optimizer="sgd"`` (either protocol): the experts' optimiser instead, SGD with momentum 0.9 at
  the recipe's lr (the ``standard`` preset: lr 1e-2, the experts' own rate), the rest unchanged.

Test windows are scored at stride ``test_stride`` (1: every window; CondTSF's ``distill.py`` scores
its test range at stride 12, which the ``condtsf`` preset sets).

Model selection (the validation score used to pick the best synthetic set during distillation)
uses the validation split under ``standard`` and, since the ``condtsf`` protocol has none, the
last 10% of the training windows there: windows the experts also train on and the synthetic
set may start from, so the selection is not on held-out data. The test split is never scored for
selection (under ``condtsf`` its rows do enter the scaling, :mod:`ddtime.driver.data.forecast`).
"""
from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import torch

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.models import build_model
from ddtime.driver.training import evaluate, train_model

__all__ = ["student_recipe", "validation_windows", "train_students", "make_validator", "random_subset", "run_stats",
           "build_student"]


def student_recipe(protocol: str, *, epochs: int | None = None, lr: float | None = None,
                   patience: int | None = None, test_stride: int | None = None,
                   optimizer: str | None = None) -> dict[str, Any]:
    """``train_model`` keyword arguments for students trained on a synthetic set under ``protocol``;
    ``optimizer`` (``"adam"`` or ``"sgd"``, momentum 0.9) replaces the protocol's."""
    if protocol == "condtsf":
        recipe = {"optimizer": "sgd", "lr": 1e-4, "epochs": 250, "batch_size": 64, "patience": None,
                  "momentum": 0.9, "lr_schedule": "constant"}
    elif protocol == "standard":
        recipe = {"optimizer": "adam", "lr": 1e-3, "epochs": 300, "batch_size": 64, "patience": 20,
                  "lr_schedule": "constant"}
    else:
        raise ValueError(f"protocol: expected 'standard' or 'condtsf', got {protocol!r}")
    recipe["test_stride"] = 1
    if optimizer is not None and optimizer != recipe["optimizer"]:
        check_choice("optimizer", optimizer, ("adam", "sgd"))
        if optimizer == "sgd":
            recipe.update(optimizer="sgd", momentum=0.9)
        else:
            recipe["optimizer"] = "adam"
            recipe.pop("momentum")
    for name, value in (("epochs", epochs), ("patience", patience), ("test_stride", test_stride)):
        if value is not None:
            recipe[name] = check_int(name, value)
    if lr is not None:
        recipe["lr"] = check_number("lr", lr, positive=True)
    return recipe


def validation_windows(data) -> torch.Tensor:
    """Windows used for model selection ``[B, N, L]``: the validation split, or under ``condtsf``
    (no validation split) the last 10% of the training windows (not held out of expert training)."""
    if data.val is not None:
        return data.windows("val")
    train = data.windows("train")
    return train[-max(1, train.shape[0] // 10):]


def run_stats(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Mean and population std of the runs' test MSE / MAE, and the runs themselves."""
    mse = [r["test_mse"] for r in runs]
    mae = [r["test_mae"] for r in runs]
    std = (lambda v: statistics.pstdev(v) if len(v) > 1 else 0.0)
    return {"test_mse": statistics.fmean(mse), "test_mse_std": std(mse), "test_mae": statistics.fmean(mae),
            "test_mae_std": std(mae), "runs": [dict(r) for r in runs]}


def build_student(model: str, data, seed: int, model_kwargs: dict | None):
    """A fresh ``model`` for ``data``'s lengths and channels, initialised with ``seed``."""
    return build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels, seed=seed,
                       **(model_kwargs or {}))


def train_students(windows: torch.Tensor, data, *, model: str = "dlinear", num_students: int = 5,
                   recipe: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu", quiet: bool = True,
                   model_kwargs: dict | None = None) -> dict[str, Any]:
    """Train ``num_students`` fresh students on ``windows`` ``[S, N, L]`` alone; test MSE/MAE mean and std.

    Student k is initialised and shuffled with seed ``seed + k``. Returns ``{"test_mse",
    "test_mse_std", "test_mae", "test_mae_std", "runs": [{"test_mse", "test_mae", "val_mse",
    "epochs"}, ...]}`` (population std over students).
    """
    check_int("num_students", num_students)
    recipe = student_recipe(data.protocol) if recipe is None else recipe
    runs = []
    for k in range(num_students):
        student = build_student(model, data, seed + k, model_kwargs)
        out = train_model(student, data, train_windows=windows, seed=seed + k, device=device, quiet=quiet, **recipe)
        runs.append({"test_mse": out["test_mse"], "test_mae": out["test_mae"], "val_mse": out["val_mse"],
                     "epochs": out["epochs"]})
    return run_stats(runs)


def make_validator(data, *, model: str = "dlinear", recipe: dict[str, Any] | None = None, seed: int = 0,
                   device: str = "cpu", model_kwargs: dict | None = None) -> Callable[[torch.Tensor], float]:
    """``score(windows) -> validation MSE`` of one student (seed ``seed``) trained on ``windows`` alone."""
    recipe = student_recipe(data.protocol) if recipe is None else recipe
    val = validation_windows(data)

    def score(windows: torch.Tensor) -> float:
        student = build_student(model, data, seed, model_kwargs)
        train_model(student, data, train_windows=windows, seed=seed, device=device, quiet=True, **recipe)
        return evaluate(student, val, seq_len=data.seq_len, device=device)["mse"]

    return score


def random_subset(data, size: int, *, seed: int = 0) -> torch.Tensor:
    """``size`` random real training windows ``[size, N, L]`` (seeded, without replacement)."""
    train = data.windows("train")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= train.shape[0]:
        raise ValueError(f"size: expected an int in [1, {train.shape[0]}], got {size!r}")
    idx = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:size]
    return train[idx]
