"""``ddtime distill``: experts (trained on demand), distillation, evaluation, results and plots.

With no ``--data`` the command runs on the built-in generated dataset under CondTSF's preset
(``QUICK_PRESET``) with small sizes (``QUICK_DEFAULTS``: few experts, epochs and iterations), so
that it finishes in seconds on a 2-core CPU, expert training and evaluation included; it prints
what it chose. With ``--data`` the SPEC defaults (``FULL_DEFAULTS``), or those of ``--preset``,
apply. Any option given explicitly wins.

Outputs in ``--out``: ``results.json`` (settings, test_mse, test_mae, test_mse_std, test_mae_std,
full_data_test_mse, random_subset_test_mse, seconds, ...), ``synthetic.safetensors`` (the set
chosen on validation), ``history.json`` (loss history), ``checkpoint.pt`` (for ``--resume``),
``windows.png``, ``spectra.png``, ``loss.png``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings
from typing import Any

import torch

from ddtime.cli_types import (fraction, method_option, non_negative_float, non_negative_int, positive_float,
                              positive_int)

__all__ = ["FULL_DEFAULTS", "QUICK_DEFAULTS", "ensure_experts", "run_distillation", "configure_parser", "run"]

FULL_DEFAULTS = {"samples": 10, "iterations": 300, "num_experts": 40, "expert_epochs": 80, "students": 5,
                 "select_every": 50, "checkpoint_every": 10, "eval_epochs": None, "threads": None}
# Without --data: CondTSF's preset (its students are the short SGD runs trajectory matching imitates) at
# small sizes, on the built-in generated dataset.
QUICK_PRESET = "condtsf"
QUICK_DEFAULTS = {"iterations": 60, "num_experts": 4, "expert_epochs": 80, "students": 3, "select_every": 10,
                  "checkpoint_every": 10, "threads": 1}


# experts --------------------------------------------------------------------------------------
def ensure_experts(data, *, directory, model: str = "dlinear", num_experts: int, expert_epochs: int,
                   optimizer: str = "sgd", seed: int = 0, device: str = "cpu", quiet: bool = False,
                   model_kwargs: dict | None = None):
    """An ExpertStore with at least ``num_experts`` experts for these settings, training what is missing.

    ``directory`` itself is used when its manifest has these settings; otherwise a subdirectory
    named after the settings (so one ``--experts`` folder can hold several datasets/settings).
    """
    from ddtime.experts import MANIFEST, ExpertStore, data_fingerprint, train_experts

    directory = pathlib.Path(directory)
    wanted = {"protocol": data.protocol, "seq_len": data.seq_len, "pred_len": data.pred_len, "stride": data.stride,
              "model": model,
              "expert_epochs": expert_epochs, "optimizer": optimizer, "seed": seed,
              "data_fingerprint": data_fingerprint(data), "model_kwargs": dict(sorted((model_kwargs or {}).items()))}
    target = directory
    if (directory / MANIFEST).exists():
        if not ExpertStore(directory).matches(**wanted):
            target = None
    elif directory.exists() and any(directory.iterdir()):
        target = None
    if target is None:
        name = (f"{data.name}-{data.protocol}-{data.seq_len}-{data.pred_len}-st{data.stride}-{model}-{optimizer}"
                f"-e{expert_epochs}"
                f"-s{seed}-{wanted['data_fingerprint'][:8]}")
        target = directory / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if (target / MANIFEST).exists():
        store = ExpertStore(target)
        if store.matches(num_experts=num_experts, **wanted):
            return store
    return train_experts(data, model=model, num_experts=num_experts, expert_epochs=expert_epochs, optimizer=optimizer,
                         model_kwargs=model_kwargs, out_dir=target, device=device, seed=seed, quiet=quiet)


# one run --------------------------------------------------------------------------------------
def run_distillation(data, config, *, experts, out_dir, resume: bool = False, students: int = 5,
                     eval_models: tuple[str, ...] = (), recipe: dict | None = None, baseline_cache: dict | None = None,
                     data_arg: str = "", plots: bool = True, full_epochs: int | None = None,
                     expert_seconds: float = 0.0) -> dict[str, Any]:
    """Distil, evaluate and write ``out_dir``'s files for one :class:`~ddtime.distill.DistillConfig`.

    ``baseline_cache`` (a dict kept by the caller) shares the full-data / random-subset
    references between runs on the same data. ``seconds`` in the results counts distillation,
    evaluation and plots; ``total_seconds`` adds ``expert_seconds`` (expert training time spent
    by the caller). Returns the ``results.json`` content.
    """
    from ddtime._atomic import atomic_write_bytes
    from ddtime.distill.checkpoint import save_synthetic
    from ddtime.distill.loop import distill
    from ddtime.evaluate import (experts_reference, full_data_baseline, make_validator, random_subset, student_recipe,
                                 train_students)

    t0 = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = student_recipe(data.protocol) if recipe is None else recipe
    validate = make_validator(data, model=config.model, recipe=recipe, seed=config.seed, device=config.device,
                              model_kwargs=config.model_kwargs)
    result = distill(data, config, experts=experts, out_dir=out_dir, resume=resume, validate=validate)
    windows = result.windows
    save_synthetic(out_dir / "synthetic.safetensors", windows, {
        "data": data_arg, "dataset": data.name, "protocol": data.protocol, "seq_len": data.seq_len,
        "pred_len": data.pred_len, "model": config.model, "method": config.method, "condtsf": config.condtsf,
        "ddtime": config.ddtime, "seed": config.seed, "best_iteration": result.best_iteration})
    cache = baseline_cache if baseline_cache is not None else {}
    # the random real subset: the real stretch a series set starts from (CondTSF's iteration 0),
    # else as many random training windows as the set holds
    subset = (result.initial_windows if config.representation == "series"
              else random_subset(data, windows.shape[0], seed=config.seed))
    per_model: dict[str, Any] = {}
    t_eval = time.perf_counter()
    for name in (config.model, *[m for m in eval_models if m != config.model]):
        kwargs = config.model_kwargs if name == config.model else None
        synthetic = train_students(windows, data, model=name, num_students=students, recipe=recipe, seed=config.seed,
                                   device=config.device, quiet=True, model_kwargs=kwargs)
        key = (name, config.representation, windows.shape[0], students, config.seed, json.dumps(recipe, sort_keys=True),
               full_epochs)
        if key not in cache:
            if data.protocol == "condtsf" and experts is not None and name == config.model:
                full = experts_reference(experts)  # CondTSF's "full data": the experts' final models
            else:
                full = full_data_baseline(data, model=name, epochs=full_epochs, seed=config.seed, device=config.device,
                                          quiet=True, model_kwargs=kwargs)
            cache[key] = {
                "random_subset": train_students(subset, data, model=name, num_students=students, recipe=recipe,
                                                seed=config.seed, device=config.device, quiet=True,
                                                model_kwargs=kwargs),
                "full_data": full,
            }
        per_model[name] = {"synthetic": synthetic, **cache[key]}
    evaluate_seconds = time.perf_counter() - t_eval
    main = per_model[config.model]
    results = {
        "settings": {**config.to_dict(), "data": data_arg, "dataset": data.name, "protocol": data.protocol,
                     "seq_len": data.seq_len, "pred_len": data.pred_len, "students": students,
                     "num_experts": experts.num_experts if experts is not None else 0,
                     "expert_epochs": (experts.trajectory(0).shape[0] - 1) if experts is not None else 0,
                     "student_recipe": recipe, "synthetic_windows": int(windows.shape[0])},
        "test_mse": main["synthetic"]["test_mse"], "test_mae": main["synthetic"]["test_mae"],
        "test_mse_std": main["synthetic"]["test_mse_std"], "test_mae_std": main["synthetic"]["test_mae_std"],
        "full_data_test_mse": main["full_data"]["test_mse"], "full_data_test_mae": main["full_data"]["test_mae"],
        "random_subset_test_mse": main["random_subset"]["test_mse"],
        "random_subset_test_mse_std": main["random_subset"]["test_mse_std"],
        "random_subset_test_mae": main["random_subset"]["test_mae"],
        "teacher_test_mse": experts.teacher_test_mse() if experts is not None and (config.condtsf or config.ddtime)
        else None,
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
        from ddtime.distill.plots import plot_run

        plot_run(out_dir, windows, data.windows("train"), result.history, result.val_history, seq_len=data.seq_len,
                 seed=config.seed)
    results["seconds"] = time.perf_counter() - t0
    results["expert_seconds"] = expert_seconds
    results["total_seconds"] = results["seconds"] + expert_seconds
    atomic_write_bytes(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    return results


# command line ---------------------------------------------------------------------------------
def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ddtime distill`` and ``ddtime compare``."""
    from ddtime.models import MODELS

    from ddtime.presets import PRESETS

    parser.add_argument("--data", default=None,
                        help="dataset name (ETTh1, ...) or CSV path; omitted = built-in generated dataset "
                             "with quick defaults")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="every default of a published setting (condtsf: CondTSF's code; see ddtime.presets); "
                             "explicit options win")
    parser.add_argument("--protocol", choices=("standard", "condtsf"), default=None, help="default standard")
    parser.add_argument("--seq-len", type=positive_int, default=None, help="look-back (96 standard, 24 condtsf)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="horizon (96 standard, 24 condtsf)")
    parser.add_argument("--model", type=str.lower, choices=sorted(MODELS), default="dlinear",
                        help="distillation / expert architecture")
    parser.add_argument("--alpha", type=fraction, default=0.8, help="DDTime frequency weight in the value term")
    parser.add_argument("--lambda-val", type=non_negative_float, default=1.0, help="DDTime value-term weight")
    parser.add_argument("--lambda-is", type=non_negative_float, default=0.6, help="DDTime ISIB weight")
    parser.add_argument("--tau", type=positive_float, default=1.0, help="ISIB softmax temperature")
    parser.add_argument("--student-side", choices=("labels", "student"), default="labels",
                        help="value-term student side: synthetic labels or the unrolled student's forecast")
    parser.add_argument("--loss-impl", choices=("fused", "reference"), default="fused",
                        help="DDTime terms with ddtime's fused ops or the plain-PyTorch reference")
    parser.add_argument("--term-balance", choices=("none", "grad-norm"), default="grad-norm",
                        help="how L_base and DDTime's terms combine: each term's gradient scaled to unit norm before "
                             "the lambdas (grad-norm, default) or SPEC's plain sum (none)")
    parser.add_argument("--condtsf-beta", type=fraction, default=0.01, help="CondTSF value-update step")
    parser.add_argument("--samples", type=positive_int, default=None, help="synthetic windows S (default 10)")
    parser.add_argument("--representation", choices=("windows", "series"), default=None, help="default windows")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="window stride of the series representation (default 4)")
    parser.add_argument("--iterations", type=positive_int, default=None, help="distillation iterations (default 300)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="Adam lr of the synthetic data")
    parser.add_argument("--method-option", type=method_option, action="append", default=[], metavar="KEY=VALUE",
                        help="method hyper-parameter, e.g. syn_steps=10 (repeatable)")
    parser.add_argument("--num-experts", type=positive_int, default=None, help="expert trajectories (default 40)")
    parser.add_argument("--expert-epochs", type=positive_int, default=None, help="epochs per expert (default 80)")
    parser.add_argument("--experts", default=None, help="expert directory (default OUT/experts)")
    parser.add_argument("--students", type=positive_int, default=None, help="evaluation students (default 5)")
    parser.add_argument("--eval-models", default="", help="extra comma-separated student architectures")
    parser.add_argument("--eval-epochs", type=positive_int, default=None, help="student epochs (default: recipe)")
    parser.add_argument("--eval-lr", type=positive_float, default=None, help="student lr (default: recipe)")
    parser.add_argument("--full-epochs", type=positive_int, default=None, help="full-data reference epochs (10)")
    parser.add_argument("--select-every", type=non_negative_int, default=None,
                        help="validation selection every N iterations (0 = keep the final set)")
    parser.add_argument("--select-initial", action="store_true",
                        help="let the initial set (= the random-subset reference) compete in the selection")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None, help="checkpoint every N iterations")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--expert-seed", type=non_negative_int, default=None,
                        help="seed of the experts (default --seed): several distillation seeds can share one "
                             "expert set, as CondTSF's repeated runs share one buffer")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's; 1 without --data: the small models gain nothing "
                             "from intra-op threads and a shared machine loses a lot)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime distill``."""
    from ddtime.distill.methods import METHODS

    parser.description = "Distil a forecasting dataset into a few synthetic windows and evaluate them."
    add_common_options(parser)
    parser.add_argument("--method", type=str.lower, choices=sorted(METHODS), default="mtt", help="base method")
    parser.add_argument("--condtsf", action="store_true", help="CondTSF's value update every 3rd iteration")
    parser.add_argument("--ddtime", action="store_true", help="add DDTime's value and ISIB terms")
    parser.add_argument("--out", default="runs/distill", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    return parser


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the options left at ``None`` from ``--preset``, then the quick (no --data) or full
    defaults; returns the choices (printed by the commands)."""
    from ddtime.presets import fill_defaults, preset_defaults

    chosen: dict[str, Any] = {}
    quick = args.data is None
    if quick and getattr(args, "preset", None) is None:
        args.preset = chosen["preset"] = QUICK_PRESET
    preset = preset_defaults(args.preset) if getattr(args, "preset", None) else {}
    args.method_defaults = preset.pop("method_defaults", {})
    if args.method_defaults:
        chosen["method_defaults"] = args.method_defaults
    defaults = {**FULL_DEFAULTS, "protocol": "standard", "representation": "windows", "stride": 4, **preset,
                **(QUICK_DEFAULTS if quick else {})}
    if preset:
        defaults.pop("samples")  # set by load_data from the dataset's condensing rate
    chosen.update(fill_defaults(args, defaults))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from ddtime.data.protocols import DEFAULT_LENGTHS

    for key in ("seq_len", "pred_len"):
        if getattr(args, key) is None:
            setattr(args, key, DEFAULT_LENGTHS[args.protocol])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but no CUDA device is available")
    if args.eval_models:
        from ddtime.models import MODELS

        models = [m.strip().lower() for m in args.eval_models.split(",") if m.strip()]
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise ValueError(f"--eval-models: unknown model(s) {unknown}; expected names from {sorted(MODELS)}")
        args.eval_models = tuple(models)
    else:
        args.eval_models = ()
    return chosen


def build_config(args: argparse.Namespace, *, method: str, condtsf: bool, ddtime: bool,
                 options: dict | None = None):
    """The DistillConfig of a parsed command line (after :func:`resolve`); ``options`` replaces
    the ``--method-option`` entries (``ddtime compare`` passes those each method accepts)."""
    from ddtime.distill.loop import DistillConfig

    options = dict(args.method_option) if options is None else dict(options)
    return DistillConfig(
        method=method, method_options={**getattr(args, "method_defaults", {}).get(method, {}), **options},
        samples=args.samples,
        representation=args.representation, stride=args.stride, iterations=args.iterations, lr=args.lr,
        condtsf=condtsf, condtsf_beta=args.condtsf_beta, ddtime=ddtime, alpha=args.alpha, lambda_val=args.lambda_val,
        lambda_is=args.lambda_is, tau=args.tau, student_side=args.student_side, loss_impl=args.loss_impl,
        term_balance=args.term_balance,
        model=args.model, seed=args.seed, device=args.device, select_every=args.select_every,
        select_initial=args.select_initial,
        checkpoint_every=args.checkpoint_every, quiet=args.quiet)


def expert_seed(args: argparse.Namespace) -> int:
    """The experts' seed of a parsed command line."""
    return args.seed if getattr(args, "expert_seed", None) is None else args.expert_seed


def check_method_options(method: str, options: dict) -> None:
    """Instantiate the method once so that a bad ``--method-option`` fails before any training."""
    from ddtime.distill.methods import build_method

    try:
        build_method(method, **options)
    except TypeError as exc:
        raise ValueError(f"--method-option: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"--method-option: {exc}") from None


def load_data(args: argparse.Namespace):
    """The dataset of a resolved command line; under a preset without ``--samples``, also sets
    ``args.samples`` from the dataset (CondTSF's condensing rate)."""
    from ddtime.data import load_forecasting
    from ddtime.data.protocols import TRAIN_STRIDES

    try:
        data = load_forecasting(args.data, protocol=args.protocol, seq_len=args.seq_len, pred_len=args.pred_len,
                                stride=TRAIN_STRIDES[args.protocol])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--data: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"--data / --seq-len / --pred-len: {exc}") from None
    if getattr(args, "preset", None) == "condtsf" and args.samples is None:
        from ddtime.presets import series_windows_per_channel

        rows = max(end for _, end in data.borders.values())
        per_channel = series_windows_per_channel(data.name, rows, seq_len=data.seq_len, pred_len=data.pred_len,
                                                 stride=args.stride)
        channels = len(data.channels) if data.protocol == "condtsf" else 1  # channel-independent windows
        args.samples = per_channel * channels
        print(f"ddtime: preset condtsf: {per_channel} synthetic windows per channel x {channels} "
              f"channel{'s' if channels > 1 else ''} = samples={args.samples}")
    return data


def run(args: argparse.Namespace) -> int:
    """``ddtime distill``."""
    from ddtime.distill.methods import build_method
    from ddtime.evaluate import student_recipe

    chosen = resolve(args)
    if chosen:
        kind = (f"preset {args.preset}" if args.preset else
                "quick defaults (built-in generated dataset)" if args.data is None else "defaults")
        print(f"ddtime distill: {kind}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    if args.student_side == "student" and args.ddtime and args.method not in ("mtt", "ftd", "datm"):
        raise ValueError(f"--student-side: 'student' needs a method with an unrolled student (mtt, ftd, datm), "
                         f"not {args.method!r}")
    check_method_options(args.method, dict(args.method_option))
    data = load_data(args)
    config = build_config(args, method=args.method, condtsf=args.condtsf, ddtime=args.ddtime)
    method = build_method(args.method, **config.method_options)
    out = pathlib.Path(args.out)
    experts, t_experts = None, time.perf_counter()
    if method.requires_experts or args.condtsf or args.ddtime:
        experts = ensure_experts(data, directory=args.experts or out / "experts", model=args.model,
                                 num_experts=args.num_experts, expert_epochs=args.expert_epochs,
                                 optimizer=method.expert_optimizer, seed=expert_seed(args), device=args.device,
                                 quiet=args.quiet)
    recipe = student_recipe(data.protocol, epochs=args.eval_epochs, lr=args.eval_lr)
    results = run_distillation(data, config, experts=experts, out_dir=out, resume=args.resume,
                               students=args.students, eval_models=args.eval_models, recipe=recipe,
                               data_arg=args.data or "", full_epochs=args.full_epochs,
                               expert_seconds=time.perf_counter() - t_experts)
    print(f"{data.name} {data.protocol} {data.seq_len}->{data.pred_len} {args.method}"
          f"{' +CondTSF' if args.condtsf else ''}{' +DDTime' if args.ddtime else ''}: "
          f"test MSE {results['test_mse']:.4f} +/- {results['test_mse_std']:.4f}, MAE {results['test_mae']:.4f} | "
          f"random subset MSE {results['random_subset_test_mse']:.4f} | "
          f"full data MSE {results['full_data_test_mse']:.4f} | {results['total_seconds']:.1f}s -> {out}")
    return 0
