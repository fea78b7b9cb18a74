"""The references beside every synthetic result, on the same student architecture.

* *full data*: a model trained on all training windows (:data:`FULL_DATA_RECIPE`, TSLib's recipe:
  Adam at the backbone's rate halved per epoch, batch 32, 10 epochs, patience 3, early stopping on
  validation under ``standard``), cached on disk; under ``condtsf`` CondTSF's code reports the
  experts' final models instead (:func:`experts_reference`, scored on the students' test windows);
* *random real subset*: as many real training windows as the synthetic set holds (the initial
  stretch of a ``series`` set), trained with the synthetic set's student recipe.

:func:`evaluate_synthetic` trains the students of a synthetic set and both references for every
student architecture asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Sequence

import torch

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.evaluation.students import build_student, random_subset, run_stats, student_recipe, train_students
from ddtime.driver.experts.train import forecasting_network
from ddtime.driver.models import assign_flat_params
from ddtime.driver.training import evaluate, train_model

__all__ = ["FULL_DATA_RECIPE", "full_data_baseline", "experts_reference", "baseline_cache_dir", "evaluate_synthetic"]

# Adam at the backbone's own rate (``adam_lr``: 5e-3 for the linear models as LTSF-Linear, 1e-4 for the
# transformers as TSLib), halved every epoch from the third, early stopping on validation. A fixed 1e-4
# under-trained DLinear (ETTh1 0.426 instead of 0.386; national_illness 8.88 instead of 2.92).
FULL_DATA_RECIPE = {"optimizer": "adam", "epochs": 10, "batch_size": 32, "patience": 3, "lr_schedule": "type1"}


def experts_reference(experts, data=None, *, test_stride: int = 1) -> dict[str, Any]:
    """The full-data reference of CondTSF's code: test MSE/MAE of the experts' final models, one run
    per expert: from the expert manifest (every test window), or with ``test_stride`` > 1 scored on
    every ``test_stride``-th test window of ``data``, as the students beside it."""
    if not experts.entries:
        raise ValueError("experts: the full-data reference needs at least one trained expert")
    if test_stride == 1:
        scores = [(e["test_mse"], e["test_mae"]) for e in experts.entries]
    else:
        if data is None:
            raise ValueError("data: scoring the experts at a test stride other than 1 needs the data")
        windows, model = data.windows("test", stride=test_stride), forecasting_network(experts.settings)
        scores = []
        for i in range(experts.num_experts):
            out = evaluate(assign_flat_params(model, experts.trajectory(i)[-1]), windows, seq_len=data.seq_len)
            scores.append((out["mse"], out["mae"]))
    return run_stats([{"test_mse": mse, "test_mae": mae, "val_mse": None, "epochs": None} for mse, mae in scores])


def baseline_cache_dir() -> pathlib.Path:
    """Where full-data references are cached: ``$DDTIME_CACHE_DIR`` or ``~/.cache/ddtime``, then ``baselines/``."""
    root = os.environ.get("DDTIME_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ddtime")
    return pathlib.Path(root) / "baselines"


def _baseline_key(data, model: str, recipe: dict, num_runs: int, seed: int, model_kwargs: dict | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"model": model.lower(), "recipe": recipe, "num_runs": num_runs, "seed": seed,
                         "model_kwargs": sorted((model_kwargs or {}).items()), "protocol": data.protocol,
                         "seq_len": data.seq_len, "pred_len": data.pred_len, "stride": data.stride,
                         "torch": torch.__version__.split("+")[0]}, sort_keys=True, default=str).encode())
    for split in (data.train, data.val, data.test):
        if split is not None:
            h.update(repr(tuple(split.shape)).encode())
            h.update(split.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def full_data_baseline(data, *, model: str = "dlinear", num_runs: int = 1, epochs: int | None = None, seed: int = 0,
                       device: str = "cpu", quiet: bool = True, model_kwargs: dict | None = None,
                       cache: bool = True) -> dict[str, Any]:
    """Test MSE/MAE of ``num_runs`` models trained on all training windows (:data:`FULL_DATA_RECIPE`).

    With ``cache`` the result is kept in :func:`baseline_cache_dir`, keyed by a fingerprint of the
    data (every split), the model and the recipe, so no run trains the same reference twice.
    """
    recipe = dict(FULL_DATA_RECIPE)
    if epochs is not None:
        recipe["epochs"] = epochs
    path = baseline_cache_dir() / f"{_baseline_key(data, model, recipe, num_runs, seed, model_kwargs)}.json"
    if cache and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache entry is recomputed and rewritten
    runs = []
    for k in range(num_runs):
        out = train_model(build_student(model, data, seed + k, model_kwargs), data, seed=seed + k, device=device,
                          quiet=quiet, **recipe)
        runs.append({"test_mse": out["test_mse"], "test_mae": out["test_mae"], "val_mse": out["val_mse"],
                     "epochs": out["epochs"]})
    stats = run_stats(runs)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(stats).encode())
    return stats


def evaluate_synthetic(windows: torch.Tensor, data, *, models: Sequence[str] = ("dlinear",), num_students: int = 5,
                       recipe: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu", quiet: bool = True,
                       baselines: bool = True, subset: torch.Tensor | None = None, experts=None,
                       full_epochs: int | None = None, model_kwargs: dict[str, dict] | None = None,
                       reference_cache: dict | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate ``windows`` ``[S, N, L]`` for every student architecture in ``models``.

    Args:
        subset: the random-subset reference ``[S', N, L]`` (default: :func:`random_subset` of S
            windows drawn with ``seed``; a ``series`` set passes the real stretch it started from).
        experts: an ExpertStore; under the ``condtsf`` protocol the full-data reference of
            ``models[0]`` (the experts' architecture) is then :func:`experts_reference`, as CondTSF's code.
        model_kwargs: ``{model: options}`` for the architectures that take any.
        reference_cache: a dict kept by the caller: evaluations with the same subset, students,
            recipe and seed (the cells of a grid) share their references instead of retraining them.
    Returns ``{model: {"synthetic": stats, "random_subset": stats, "full_data": stats}}`` (the
    two references only when ``baselines``); ``stats`` as :func:`train_students`.
    """
    if not isinstance(windows, torch.Tensor) or windows.dim() != 3:
        raise ValueError(f"windows: expected a [S, N, L] tensor, got {getattr(windows, 'shape', type(windows))}")
    if windows.shape[1] != data.window_channels or windows.shape[2] != data.seq_len + data.pred_len:
        raise ValueError(f"windows: expected [S, {data.window_channels}, {data.seq_len + data.pred_len}] for this data, "
                         f"got {tuple(windows.shape)}")
    recipe = student_recipe(data.protocol) if recipe is None else recipe
    if baselines and subset is None:
        subset = random_subset(data, windows.shape[0], seed=seed)
    cache = {} if reference_cache is None else reference_cache
    common = {"num_students": num_students, "recipe": recipe, "seed": seed, "device": device, "quiet": quiet}
    results: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(models):
        kwargs = (model_kwargs or {}).get(name)
        entry = {"synthetic": train_students(windows, data, model=name, model_kwargs=kwargs, **common)}
        if baselines:
            from_experts = experts is not None and data.protocol == "condtsf" and i == 0
            key = (name, json.dumps(kwargs, sort_keys=True), num_students, seed, json.dumps(recipe, sort_keys=True),
                   full_epochs, _digest(subset), str(experts.out_dir) if from_experts else None)
            if key not in cache:
                full = (experts_reference(experts, data, test_stride=recipe.get("test_stride", 1)) if from_experts else
                        full_data_baseline(data, model=name, epochs=full_epochs, seed=seed, device=device, quiet=quiet,
                                           model_kwargs=kwargs))
                cache[key] = {"random_subset": train_students(subset, data, model=name, model_kwargs=kwargs, **common),
                              "full_data": full}
            entry.update(cache[key])
        results[name] = entry
    return results


def _digest(windows: torch.Tensor) -> str:
    data = windows.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(repr(tuple(data.shape)).encode() + data.numpy().tobytes()).hexdigest()
