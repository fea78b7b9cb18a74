"""Evaluation of a synthetic set: fresh students trained on it alone, scored on the test split.

Student recipes (SPEC section 4; everything switchable):

* ``condtsf``: SGD lr 1e-4, momentum 0.9, batch 64, 250 epochs, constant rate (CondTSF's code).
* ``standard``: Adam with early stopping on the validation split (best weights restored), batch
  64, at most 300 epochs, patience 20, constant lr 1e-3. TSLib's recipe (lr 1e-4 halved every
  epoch, patience 3) assumes hundreds of steps per epoch; on a 10-window set an epoch is one
  step, so the rate stays constant and patience counts more epochs.

Beside every synthetic result two references use the same student architecture: the
*full-data* model (TSLib recipe: Adam 1e-4 halved per epoch, batch 32, 10 epochs, patience 3,
early stopping on validation under ``standard``) and a *random real subset* of as many training
windows as the synthetic set holds, trained with the synthetic set's recipe. Model selection
(the validation score used to pick the best synthetic set during distillation) uses the
validation split under ``standard`` and, since the ``condtsf`` protocol has none, the last 10% of
the training windows there; the test split is never used for selection.

CLI: ``ddtime evaluate --synthetic OUT/synthetic.safetensors [--models dlinear,mlp]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import statistics
from typing import Any, Callable, Sequence

import torch

__all__ = [
    "student_recipe", "validation_windows", "train_students", "make_validator", "random_subset",
    "full_data_baseline", "experts_reference", "baseline_cache_dir", "evaluate_synthetic", "configure_parser", "run",
    "FULL_DATA_RECIPE",
]

# Adam at the backbone's own rate (``adam_lr``: 5e-3 for the linear models as LTSF-Linear, 1e-4 for the
# transformers as TSLib), halved every epoch from the third, early stopping on validation. A fixed 1e-4
# under-trained DLinear (ETTh1 0.426 instead of 0.386; national_illness 8.88 instead of 2.92).
FULL_DATA_RECIPE = {"optimizer": "adam", "epochs": 10, "batch_size": 32, "patience": 3, "lr_schedule": "type1"}


def student_recipe(protocol: str, *, epochs: int | None = None, lr: float | None = None,
                   patience: int | None = None) -> dict[str, Any]:
    """``train_model`` keyword arguments for students trained on a synthetic set under ``protocol``."""
    if protocol == "condtsf":
        recipe = {"optimizer": "sgd", "lr": 1e-4, "epochs": 250, "batch_size": 64, "patience": None,
                  "momentum": 0.9, "lr_schedule": "constant"}
    elif protocol == "standard":
        recipe = {"optimizer": "adam", "lr": 1e-3, "epochs": 300, "batch_size": 64, "patience": 20,
                  "lr_schedule": "constant"}
    else:
        raise ValueError(f"protocol: expected 'standard' or 'condtsf', got {protocol!r}")
    for name, value in (("epochs", epochs), ("patience", patience)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
            recipe[name] = value
    if lr is not None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
        recipe["lr"] = float(lr)
    return recipe


def validation_windows(data) -> torch.Tensor:
    """Windows used for model selection ``[B, N, L]``: the validation split, or under ``condtsf``
    (no validation split) the last 10% of the training windows."""
    if data.val is not None:
        return data.windows("val")
    train = data.windows("train")
    return train[-max(1, train.shape[0] // 10):]


def _stats(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    mse = [r["test_mse"] for r in runs]
    mae = [r["test_mae"] for r in runs]
    std = (lambda v: statistics.pstdev(v) if len(v) > 1 else 0.0)
    return {"test_mse": statistics.fmean(mse), "test_mse_std": std(mse), "test_mae": statistics.fmean(mae),
            "test_mae_std": std(mae), "runs": [dict(r) for r in runs]}


def _build(model: str, data, seed: int, model_kwargs: dict | None):
    from ddtime.models import build_model

    return build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.n_channels, seed=seed,
                       **(model_kwargs or {}))


def train_students(windows: torch.Tensor, data, *, model: str = "dlinear", num_students: int = 5,
                   recipe: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu", quiet: bool = True,
                   model_kwargs: dict | None = None) -> dict[str, Any]:
    """Train ``num_students`` fresh students on ``windows`` ``[S, N, L]`` alone; test MSE/MAE mean and std.

    Student k is initialised and shuffled with seed ``seed + k``. Returns ``{"test_mse",
    "test_mse_std", "test_mae", "test_mae_std", "runs": [{"test_mse", "test_mae", "val_mse",
    "epochs"}, ...]}`` (population std over students).
    """
    from ddtime.training import train_model

    if isinstance(num_students, bool) or not isinstance(num_students, int) or num_students < 1:
        raise ValueError(f"num_students: expected a positive int, got {num_students!r}")
    recipe = student_recipe(data.protocol) if recipe is None else recipe
    runs = []
    for k in range(num_students):
        student = _build(model, data, seed + k, model_kwargs)
        out = train_model(student, data, train_windows=windows, seed=seed + k, device=device, quiet=quiet, **recipe)
        runs.append({"test_mse": out["test_mse"], "test_mae": out["test_mae"], "val_mse": out["val_mse"],
                     "epochs": out["epochs"]})
    return _stats(runs)


def make_validator(data, *, model: str = "dlinear", recipe: dict[str, Any] | None = None, seed: int = 0,
                   device: str = "cpu", model_kwargs: dict | None = None) -> Callable[[torch.Tensor], float]:
    """``score(windows) -> validation MSE`` of one student (seed ``seed``) trained on ``windows`` alone."""
    from ddtime.training import evaluate, train_model

    recipe = student_recipe(data.protocol) if recipe is None else recipe
    val = validation_windows(data)

    def score(windows: torch.Tensor) -> float:
        student = _build(model, data, seed, model_kwargs)
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


def experts_reference(experts) -> dict[str, Any]:
    """The full-data reference of CondTSF's code: test MSE/MAE of the experts' final models (from
    the expert manifest; one run per expert)."""
    runs = [{"test_mse": e["test_mse"], "test_mae": e["test_mae"], "val_mse": None, "epochs": None}
            for e in experts.entries]
    if not runs:
        raise ValueError("experts: the full-data reference needs at least one trained expert")
    return _stats(runs)


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
    from ddtime._atomic import atomic_write_bytes
    from ddtime.training import train_model

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
        out = train_model(_build(model, data, seed + k, model_kwargs), data, seed=seed + k, device=device,
                          quiet=quiet, **recipe)
        runs.append({"test_mse": out["test_mse"], "test_mae": out["test_mae"], "val_mse": out["val_mse"],
                     "epochs": out["epochs"]})
    stats = _stats(runs)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(stats).encode())
    return stats


def evaluate_synthetic(windows: torch.Tensor, data, *, models: Sequence[str] = ("dlinear",), num_students: int = 5,
                       recipe: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu", quiet: bool = True,
                       baselines: bool = True, full_epochs: int | None = None,
                       model_kwargs: dict[str, dict] | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate ``windows`` ``[S, N, L]`` for every student architecture in ``models``.

    Returns ``{model: {"synthetic": stats, "random_subset": stats, "full_data": stats}}`` (the
    two references only when ``baselines``); ``stats`` as :func:`train_students`.
    """
    if not isinstance(windows, torch.Tensor) or windows.dim() != 3:
        raise ValueError(f"windows: expected a [S, N, L] tensor, got {getattr(windows, 'shape', type(windows))}")
    if windows.shape[1] != data.n_channels or windows.shape[2] != data.seq_len + data.pred_len:
        raise ValueError(f"windows: expected [S, {data.n_channels}, {data.seq_len + data.pred_len}] for this data, "
                         f"got {tuple(windows.shape)}")
    results: dict[str, dict[str, Any]] = {}
    subset = random_subset(data, windows.shape[0], seed=seed) if baselines else None
    for name in models:
        kwargs = (model_kwargs or {}).get(name)
        entry = {"synthetic": train_students(windows, data, model=name, num_students=num_students, recipe=recipe,
                                             seed=seed, device=device, quiet=quiet, model_kwargs=kwargs)}
        if baselines:
            entry["random_subset"] = train_students(subset, data, model=name, num_students=num_students,
                                                    recipe=recipe, seed=seed, device=device, quiet=quiet,
                                                    model_kwargs=kwargs)
            entry["full_data"] = full_data_baseline(data, model=name, epochs=full_epochs, seed=seed, device=device,
                                                    quiet=quiet, model_kwargs=kwargs)
        results[name] = entry
    return results


# command line ---------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime evaluate``."""
    from ddtime.cli_types import non_negative_int, positive_float, positive_int

    parser.add_argument("--synthetic", required=True, help="synthetic set written by `ddtime distill` (safetensors)")
    parser.add_argument("--data", default=None, help="dataset name or CSV path (default: the one the set was made from)")
    parser.add_argument("--protocol", choices=("standard", "condtsf"), default=None)
    parser.add_argument("--seq-len", type=positive_int, default=None)
    parser.add_argument("--pred-len", type=positive_int, default=None)
    parser.add_argument("--models", default=None,
                        help="comma-separated student architectures (default: the distillation model)")
    parser.add_argument("--students", type=positive_int, default=5, help="fresh students per architecture")
    parser.add_argument("--eval-epochs", type=positive_int, default=None,
                        help="student epochs (default: protocol recipe)")
    parser.add_argument("--eval-lr", type=positive_float, default=None, help="student learning rate (default: recipe)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the full-data and random-subset references")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--quiet", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime evaluate``: print (and optionally save) the evaluation of a synthetic set."""
    from ddtime.data import load_forecasting
    from ddtime.distill.checkpoint import load_synthetic
    from ddtime.models import MODELS

    windows, meta = load_synthetic(args.synthetic)
    data_arg = args.data if args.data is not None else (meta.get("data") or None)
    protocol = args.protocol or meta.get("protocol", "standard")
    seq_len = args.seq_len or int(meta.get("seq_len", 96))
    pred_len = args.pred_len or int(meta.get("pred_len", 96))
    models = [m.strip().lower() for m in (args.models or meta.get("model", "dlinear")).split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {unknown}; expected names from {sorted(MODELS)}")
    data = load_forecasting(data_arg, protocol=protocol, seq_len=seq_len, pred_len=pred_len)
    recipe = student_recipe(protocol, epochs=args.eval_epochs, lr=args.eval_lr)
    results = evaluate_synthetic(windows, data, models=models, num_students=args.students, recipe=recipe,
                                 seed=args.seed, device=args.device, quiet=args.quiet,
                                 baselines=not args.no_baselines)
    for name, entry in results.items():
        line = (f"{name}: synthetic MSE {entry['synthetic']['test_mse']:.4f} +/- {entry['synthetic']['test_mse_std']:.4f}"
                f", MAE {entry['synthetic']['test_mae']:.4f}")
        if "full_data" in entry:
            line += (f" | random subset MSE {entry['random_subset']['test_mse']:.4f}"
                     f" | full data MSE {entry['full_data']['test_mse']:.4f}")
        print(line)
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"synthetic": str(args.synthetic), "data": data.name, "protocol": protocol,
                                    "seq_len": seq_len, "pred_len": pred_len, "results": results}, indent=2))
    return 0
