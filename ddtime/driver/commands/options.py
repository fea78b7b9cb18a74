"""The options ``ddtime distill`` and ``ddtime compare`` share, and the objects a parsed command
line stands for: defaults filled from a preset or the quick / full defaults (:func:`resolve`), the
dataset (:func:`load_data`), the run's :class:`~ddtime.driver.distill.DistillConfig`, its experts and
its evaluation.

With no ``--data`` the commands run on the built-in generated dataset under CondTSF's preset
(``QUICK_PRESET``) with small sizes (``QUICK_DEFAULTS``: few experts, epochs and iterations), so
that they finish in seconds on a 2-core CPU, expert training and evaluation included; they print
what they chose. With ``--data`` the SPEC defaults (``FULL_DEFAULTS``), or those of ``--preset``,
apply. Any option given explicitly wins.
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Any

import torch

from ddtime.driver.commands.types import (fraction, method_option, model_list, non_negative_float, non_negative_int,
                                          positive_float, positive_int)
from ddtime.driver.data import PROTOCOLS, load_forecasting
from ddtime.driver.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
from ddtime.driver.distill import TERM_BALANCES, CondTSFUpdate, DDTimeTerms, DistillConfig
from ddtime.driver.distill.synthetic import REPRESENTATIONS
from ddtime.driver.distill.terms import LOSS_IMPLS, STUDENT_SIDES
from ddtime.driver.evaluation import student_recipe
from ddtime.driver.models import MODELS
from ddtime.driver.pipeline import EvaluationConfig, ExpertSettings
from ddtime.driver.presets import PRESETS, preset_defaults, series_windows_per_channel

__all__ = ["FULL_DEFAULTS", "QUICK_PRESET", "QUICK_DEFAULTS", "add_common_options", "fill_defaults", "resolve",
           "load_data",
           "distill_config", "condtsf_update", "ddtime_terms", "expert_settings", "evaluation_config"]

# the library's own defaults (SPEC's), for the options that a preset or the quick run may change
FULL_DEFAULTS = {"samples": DistillConfig.samples, "iterations": DistillConfig.iterations,
                 "num_experts": ExpertSettings.num_experts, "expert_epochs": ExpertSettings.epochs,
                 "students": EvaluationConfig.students, "select_every": DistillConfig.select_every,
                 "checkpoint_every": DistillConfig.checkpoint_every, "eval_epochs": None, "threads": None}
# Without --data: CondTSF's preset (its students are the short SGD runs trajectory matching imitates) at
# small sizes, on the built-in generated dataset.
QUICK_PRESET = "condtsf"
QUICK_DEFAULTS = {"iterations": 60, "num_experts": 4, "expert_epochs": 80, "students": 3, "select_every": 10,
                  "checkpoint_every": 10, "threads": 1}


def fill_defaults(args, defaults: dict[str, Any]) -> dict[str, Any]:
    """Set every option of ``args`` (an argparse namespace) that has the attribute and is still
    ``None`` from ``defaults``; returns what was set, for the command to print."""
    chosen = {}
    for key, value in defaults.items():
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, value)
            chosen[key] = value
    return chosen


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ddtime distill`` and ``ddtime compare``."""
    parser.add_argument("--data", default=None,
                        help="dataset name (ETTh1, ...) or CSV path; omitted = built-in generated dataset "
                             "with quick defaults")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="every default of a published setting (condtsf: CondTSF's code; see "
                             "ddtime.driver.presets); "
                             "explicit options win")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default standard")
    parser.add_argument("--seq-len", type=positive_int, default=None, help="look-back (96 standard, 24 condtsf)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="horizon (96 standard, 24 condtsf)")
    parser.add_argument("--model", type=str.lower, choices=sorted(MODELS), default=DistillConfig.model,
                        help="distillation / expert architecture")
    parser.add_argument("--alpha", type=fraction, default=DDTimeTerms.alpha,
                        help="DDTime frequency weight in the value term")
    parser.add_argument("--lambda-val", type=non_negative_float, default=DDTimeTerms.lambda_val,
                        help="DDTime value-term weight")
    parser.add_argument("--lambda-is", type=non_negative_float, default=DDTimeTerms.lambda_is,
                        help="DDTime ISIB weight")
    parser.add_argument("--tau", type=positive_float, default=DDTimeTerms.tau, help="ISIB softmax temperature")
    parser.add_argument("--student-side", choices=STUDENT_SIDES, default=DDTimeTerms.student_side,
                        help="value-term student side: synthetic labels or the unrolled student's forecast")
    parser.add_argument("--loss-impl", choices=LOSS_IMPLS, default=DDTimeTerms.loss_impl,
                        help="DDTime terms with ddtime's fused ops or the plain-PyTorch reference")
    parser.add_argument("--term-balance", choices=TERM_BALANCES, default=DistillConfig.term_balance,
                        help="how L_base and DDTime's terms combine: each term's gradient scaled to unit norm before "
                             "the lambdas (grad-norm, default) or SPEC's plain sum (none)")
    parser.add_argument("--condtsf-beta", type=fraction, default=CondTSFUpdate.beta, help="CondTSF value-update step")
    parser.add_argument("--samples", type=positive_int, default=None, help="synthetic windows S (default 10)")
    parser.add_argument("--representation", choices=REPRESENTATIONS, default=None, help="default windows")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="window stride of the series representation (default 4)")
    parser.add_argument("--iterations", type=positive_int, default=None, help="distillation iterations (default 300)")
    parser.add_argument("--lr", type=positive_float, default=DistillConfig.lr, help="Adam lr of the synthetic data")
    parser.add_argument("--method-option", type=method_option, action="append", default=[], metavar="KEY=VALUE",
                        help="method hyper-parameter, e.g. syn_steps=10 (repeatable)")
    parser.add_argument("--num-experts", type=positive_int, default=None, help="expert trajectories (default 40)")
    parser.add_argument("--expert-epochs", type=positive_int, default=None, help="epochs per expert (default 80)")
    parser.add_argument("--expert-lr", type=positive_float, default=None,
                        help="experts' learning rate (default: the optimiser's, SGD 5e-4)")
    parser.add_argument("--experts", default=None, help="expert directory (default OUT/experts)")
    parser.add_argument("--students", type=positive_int, default=None, help="evaluation students (default 5)")
    parser.add_argument("--eval-models", type=model_list, default=(),
                        help="extra comma-separated student architectures")
    parser.add_argument("--eval-epochs", type=positive_int, default=None, help="student epochs (default: recipe)")
    parser.add_argument("--eval-lr", type=positive_float, default=None, help="student lr (default: recipe)")
    parser.add_argument("--eval-optimizer", choices=("adam", "sgd"), default=None,
                        help="student optimiser (default: the protocol's; sgd = the experts' SGD with momentum 0.9)")
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


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the options left at ``None`` from ``--preset``, then the quick (no --data) or full
    defaults; returns the choices (printed by the commands)."""
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
    if preset and "samples" not in preset:
        defaults.pop("samples")  # set by load_data from the dataset's condensing rate
    chosen.update(fill_defaults(args, defaults))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for key in ("seq_len", "pred_len"):
        if getattr(args, key) is None:
            setattr(args, key, DEFAULT_LENGTHS[args.protocol])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but no CUDA device is available")
    return chosen


def load_data(args: argparse.Namespace):
    """The dataset of a resolved command line; under a preset without ``--samples``, also sets
    ``args.samples`` from the dataset (CondTSF's condensing rate)."""
    try:
        data = load_forecasting(args.data, protocol=args.protocol, seq_len=args.seq_len, pred_len=args.pred_len,
                                stride=TRAIN_STRIDES[args.protocol])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--data: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"--data / --seq-len / --pred-len: {exc}") from None
    if getattr(args, "preset", None) == "condtsf" and args.samples is None:
        rows = max(end for _, end in data.borders.values())
        per_channel = series_windows_per_channel(data.name, rows, seq_len=data.seq_len, pred_len=data.pred_len,
                                                 stride=args.stride)
        channels = len(data.channels) if data.protocol == "condtsf" else 1  # channel-independent windows
        args.samples = per_channel * channels
        print(f"ddtime: preset condtsf: {per_channel} synthetic windows per channel x {channels} "
              f"channel{'s' if channels > 1 else ''} = samples={args.samples}")
    return data


def condtsf_update(args: argparse.Namespace) -> CondTSFUpdate:
    """CondTSF's update as the command line sets it (used by the runs that switch it on)."""
    return CondTSFUpdate(beta=args.condtsf_beta)


def ddtime_terms(args: argparse.Namespace) -> DDTimeTerms:
    """DDTime's terms as the command line sets them (used by the runs that switch them on)."""
    return DDTimeTerms(alpha=args.alpha, lambda_val=args.lambda_val, lambda_is=args.lambda_is, tau=args.tau,
                       student_side=args.student_side, loss_impl=args.loss_impl)


def distill_config(args: argparse.Namespace, *, method: str, condtsf: bool, ddtime: bool,
                   options: dict[str, Any] | None = None) -> DistillConfig:
    """The DistillConfig of a resolved command line (after :func:`resolve`) for ``method``, with
    CondTSF's update / DDTime's terms when ``condtsf`` / ``ddtime``. Method options: the preset's
    for the method, then ``options`` (default: every ``--method-option``)."""
    options = {**args.method_defaults.get(method, {}), **(dict(args.method_option) if options is None else options)}
    config = DistillConfig(
        method=method, method_options=options, samples=args.samples, representation=args.representation,
        stride=args.stride, iterations=args.iterations, lr=args.lr,
        condtsf=condtsf_update(args) if condtsf else None, ddtime=ddtime_terms(args) if ddtime else None,
        term_balance=args.term_balance, model=args.model, seed=args.seed, device=args.device,
        select_every=args.select_every, select_initial=args.select_initial, checkpoint_every=args.checkpoint_every,
        quiet=args.quiet)
    try:
        config.build_method()  # a bad --method-option fails before any training
    except ValueError as exc:
        option = "--student-side" if str(exc).startswith("student_side") else "--method-option"
        raise ValueError(f"{option}: {exc}") from None
    return config


def expert_settings(args: argparse.Namespace) -> ExpertSettings:
    """The experts of a resolved command line: ``--experts`` (default OUT/experts), their number,
    epochs and seed (``--expert-seed``, default ``--seed``)."""
    directory = pathlib.Path(args.experts) if args.experts else pathlib.Path(args.out) / "experts"
    seed = args.seed if args.expert_seed is None else args.expert_seed
    return ExpertSettings(directory=directory, num_experts=args.num_experts, epochs=args.expert_epochs, seed=seed,
                          lr=args.expert_lr)


def evaluation_config(args: argparse.Namespace, protocol: str) -> EvaluationConfig:
    """The evaluation of a resolved command line under ``protocol`` (the data's)."""
    return EvaluationConfig(students=args.students, models=args.eval_models,
                            recipe=student_recipe(protocol, epochs=args.eval_epochs, lr=args.eval_lr,
                                                  optimizer=args.eval_optimizer),
                            full_epochs=args.full_epochs)
