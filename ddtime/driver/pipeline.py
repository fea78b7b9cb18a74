"""One distillation run end to end: the experts it needs, the distillation, the evaluation with
fresh students and references, and the files of ``out_dir``.

Outputs in ``out_dir``: ``results.json`` (settings, test_mse, test_mae, test_mse_std, test_mae_std,
full_data_test_mse, random_subset_test_mse, seconds, ...), ``synthetic.safetensors`` (the set
chosen on validation), ``history.json`` (loss history), ``checkpoint.pt`` (for ``resume``),
``windows.png``, ``spectra.png``, ``loss.png``. The checkpoint and ``results.json`` carry the run's
fingerprint (:func:`run_identity`: data, experts, evaluation); ``resume`` refuses another one.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import warnings
from dataclasses import dataclass
from typing import Any

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.distill import DistillConfig, DistillMethod, distill, save_synthetic
from ddtime.driver.distill.distributed import is_writer
from ddtime.driver.distill.plots import plot_run
from ddtime.driver.evaluation import evaluate_synthetic, make_validator, student_recipe
from ddtime.driver.experts import ExpertStore, ensure_experts
from ddtime.driver.fingerprint import run_fingerprint

__all__ = ["ExpertRequest", "EvaluationConfig", "experts_for", "teacher_experts_for", "run_identity",
           "run_distillation"]


@dataclass(frozen=True)
class ExpertRequest:
    """The experts a run asks for: where they live and how many of how many epochs (the architecture is the
    run's model, the optimiser its method's ``expert_optimizer``, the experts' recipe of
    :func:`ddtime.driver.experts.train_experts` otherwise; ``lr``: the experts' learning rate, None = the
    optimiser's default).

    ``directory`` itself is used when it holds experts of the run's settings, else a subdirectory
    named after them (:func:`ddtime.driver.experts.ensure_experts`).
    """

    directory: pathlib.Path
    num_experts: int = 40
    epochs: int = 80
    seed: int = 0
    lr: float | None = None


@dataclass(frozen=True)
class EvaluationConfig:
    """How a synthetic set is evaluated.

    students: fresh students per architecture; models: student architectures beside the run's
    model; recipe: ``train_model`` options of the students (None: the protocol's
    :func:`~ddtime.driver.evaluation.student_recipe`); full_epochs: epochs of the full-data
    reference (None: its recipe's 10).
    """

    students: int = 5
    models: tuple[str, ...] = ()
    recipe: dict[str, Any] | None = None
    full_epochs: int | None = None


def experts_for(data, config: DistillConfig, method: DistillMethod, request: ExpertRequest, *,
                quiet: bool = False) -> ExpertStore | None:
    """The ExpertStore the run needs (trained where missing), or None when neither the method nor
    CondTSF's update / DDTime's terms use experts."""
    if not (method.requires_experts or config.needs_teacher):
        return None
    return ensure_experts(data, directory=request.directory, model=config.model, num_experts=request.num_experts,
                          expert_epochs=request.epochs, optimizer=method.expert_optimizer, lr=request.lr,
                          seed=request.seed,
                          device=config.device, quiet=quiet, model_kwargs=config.model_kwargs or None)


def teacher_experts_for(data, config: DistillConfig, method: DistillMethod, request: ExpertRequest, *,
                        quiet: bool = False) -> ExpertStore | None:
    """The ExpertStore CondTSF's update draws its teachers from when it is not the method's own
    (``CondTSFUpdate.teacher_optimizer`` names another expert optimiser, e.g. CondTSF's FTD: SGD
    teachers beside GSAM experts), trained where missing; None when the run's experts serve."""
    wanted = config.condtsf.teacher_optimizer if config.condtsf is not None else None
    if wanted is None or (wanted == method.expert_optimizer and method.requires_experts):
        return None
    return ensure_experts(data, directory=request.directory, model=config.model, num_experts=request.num_experts,
                          expert_epochs=request.epochs, optimizer=wanted, seed=request.seed,
                          device=config.device, quiet=quiet, model_kwargs=config.model_kwargs or None)


def run_identity(data, experts: ExpertStore | None, evaluation: EvaluationConfig) -> dict[str, Any]:
    """The fingerprint of a run (:func:`ddtime.driver.fingerprint.run_fingerprint`), its student recipe resolved."""
    recipe = student_recipe(data.protocol) if evaluation.recipe is None else evaluation.recipe
    return run_fingerprint(data, experts, {**dataclasses.asdict(evaluation), "recipe": recipe})


def run_distillation(data, config: DistillConfig, *, experts: ExpertStore | None, out_dir,
                     evaluation: EvaluationConfig = EvaluationConfig(), resume: bool = False,
                     reference_cache: dict | None = None, data_arg: str = "", plots: bool = True,
                     expert_seconds: float = 0.0, teacher_experts: ExpertStore | None = None) -> dict[str, Any] | None:
    """Distil, evaluate and write ``out_dir``'s files for one :class:`~ddtime.driver.distill.DistillConfig`.

    ``reference_cache`` (a dict kept by the caller) shares the full-data / random-subset
    references between runs on the same data. ``seconds`` in the results counts distillation,
    evaluation and plots; ``total_seconds`` adds ``expert_seconds`` (expert training time spent
    by the caller). ``teacher_experts``: the store of CondTSF's teachers when not ``experts``
    (:func:`teacher_experts_for`). Returns the ``results.json`` content; under ``torchrun`` only rank 0
    selects, evaluates and writes, the other ranks return None after the distillation.
    """
    t0 = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    if not is_writer():
        distill(data, config, experts=experts, out_dir=out_dir, resume=resume)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = student_recipe(data.protocol) if evaluation.recipe is None else evaluation.recipe
    validate = make_validator(data, model=config.model, recipe=recipe, seed=config.seed, device=config.device,
                              model_kwargs=config.model_kwargs)
    fingerprint = run_identity(data, experts, evaluation)
    result = distill(data, config, experts=experts, out_dir=out_dir, resume=resume, validate=validate,
                     fingerprint=fingerprint, teacher_experts=teacher_experts)
    windows = result.windows
    save_synthetic(out_dir / "synthetic.safetensors", windows, {
        "data": data_arg, "dataset": data.name, "protocol": data.protocol, "scale": data.scale,
        "seq_len": data.seq_len, "pred_len": data.pred_len, "model": config.model, "method": config.method,
        "condtsf": config.condtsf is not None, "ddtime": config.ddtime_terms is not None, "seed": config.seed,
        "best_iteration": result.best_iteration})
    t_eval = time.perf_counter()
    # the random real subset: the real stretch a series set starts from (CondTSF's iteration 0),
    # else as many random training windows as the set holds (evaluate_synthetic's default)
    per_model = evaluate_synthetic(
        windows, data, models=(config.model, *[m for m in evaluation.models if m != config.model]),
        num_students=evaluation.students, recipe=recipe, seed=config.seed, device=config.device,
        subset=result.initial_windows if config.representation == "series" else None, experts=experts,
        full_epochs=evaluation.full_epochs, model_kwargs={config.model: config.model_kwargs},
        reference_cache=reference_cache)
    evaluate_seconds = time.perf_counter() - t_eval
    main = per_model[config.model]
    results = {
        "settings": {**config.to_dict(), "data": data_arg, "dataset": data.name, "protocol": data.protocol,
                     "scale": data.scale, "seq_len": data.seq_len, "pred_len": data.pred_len,
                     "students": evaluation.students,
                     "num_experts": experts.num_experts if experts is not None else 0,
                     "expert_epochs": (experts.trajectory(0).shape[0] - 1) if experts is not None else 0,
                     "student_recipe": recipe, "synthetic_windows": int(windows.shape[0])},
        "fingerprint": fingerprint,
        "test_mse": main["synthetic"]["test_mse"], "test_mae": main["synthetic"]["test_mae"],
        "test_mse_std": main["synthetic"]["test_mse_std"], "test_mae_std": main["synthetic"]["test_mae_std"],
        "full_data_test_mse": main["full_data"]["test_mse"], "full_data_test_mae": main["full_data"]["test_mae"],
        "random_subset_test_mse": main["random_subset"]["test_mse"],
        "random_subset_test_mse_std": main["random_subset"]["test_mse_std"],
        "random_subset_test_mae": main["random_subset"]["test_mae"],
        "teacher_test_mse": (teacher_experts or experts).teacher_test_mse()
        if experts is not None and config.needs_teacher else None,
        "best_iteration": result.best_iteration, "best_val_mse": result.best_val_mse,
        "val_history": [list(v) for v in result.val_history], "distill_seconds": result.seconds,
        "select_seconds": result.select_seconds, "evaluate_seconds": evaluate_seconds,
        "architectures": {name: {kind: {k: v for k, v in stats.items() if k != "runs"} for kind, stats in entry.items()}
                          for name, entry in per_model.items()},
    }
    if results["teacher_test_mse"] is not None and results["teacher_test_mse"] > results["random_subset_test_mse"]:
        warnings.warn(f"the teacher of CondTSF's update / DDTime's value term (test MSE "
                      f"{results['teacher_test_mse']:.4f}) is worse than the random real subset "
                      f"({results['random_subset_test_mse']:.4f}): train the experts longer (--expert-epochs)",
                      stacklevel=2)
    atomic_write_bytes(out_dir / "history.json", json.dumps(result.history).encode())
    if plots:
        plot_run(out_dir, windows, data.windows("train"), result.history, result.val_history, seq_len=data.seq_len,
                 seed=config.seed)
    results["seconds"] = time.perf_counter() - t0
    results["expert_seconds"] = expert_seconds
    results["total_seconds"] = results["seconds"] + expert_seconds
    atomic_write_bytes(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    return results
