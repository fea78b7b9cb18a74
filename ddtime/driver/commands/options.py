"""The options ``ddtime distill`` and ``ddtime compare`` share, and the objects a parsed command
line stands for: defaults filled from a preset or the quick / full defaults (:func:`resolve`), the
dataset (:func:`load_data`), the run's :class:`~ddtime.driver.distill.DistillConfig`, its experts and
its evaluation.

With no ``--data`` the commands run on the built-in generated dataset under CondTSF's preset
(``QUICK_PRESET``) with small sizes (``QUICK_DEFAULTS``: few experts, epochs and iterations), so
that they finish in seconds on a 2-core CPU, expert training and evaluation included; they print
what they chose. With ``--data`` the library's defaults (``FULL_DEFAULTS``), or those of ``--preset``,
apply. Any option given explicitly wins.
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Any

import torch

from ddtime.driver.commands.groups import (add_data_options, add_distill_options, add_evaluation_options,
                                           add_expert_options, add_run_options)
from ddtime.driver.data import load_forecasting
from ddtime.driver.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
from ddtime.driver.distill import CondTSFUpdate, DDTimeTerms, DistillConfig
from ddtime.driver.evaluation import student_recipe
from ddtime.driver.pipeline import EvaluationConfig, ExpertRequest
from ddtime.driver.presets import condtsf_samples, preset_defaults

__all__ = ["FULL_DEFAULTS", "QUICK_PRESET", "QUICK_DEFAULTS", "add_common_options", "fill_defaults",
           "resolve", "load_data", "distill_config", "condtsf_update", "ddtime_terms", "expert_request",
           "evaluation_config"]

# the library's own defaults, for the options that a preset or the quick run may change
FULL_DEFAULTS = {"samples": DistillConfig.samples, "iterations": DistillConfig.iterations,
                 "num_experts": ExpertRequest.num_experts, "expert_epochs": ExpertRequest.epochs,
                 "students": EvaluationConfig.students, "select_every": DistillConfig.select_every,
                 "checkpoint_every": DistillConfig.checkpoint_every, "eval_epochs": None, "test_stride": None,
                 "condtsf_teacher_every": CondTSFUpdate.teacher_every,
                 "condtsf_teacher_optimizer": CondTSFUpdate.teacher_optimizer or "method", "threads": None}
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
    """The option groups of ``ddtime distill`` and ``ddtime compare`` (:mod:`.groups`)."""
    add_data_options(parser)
    add_expert_options(parser, directory=True)
    add_distill_options(parser)
    add_evaluation_options(parser, references=True)
    add_run_options(parser)


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
    defaults = {**FULL_DEFAULTS, "protocol": "standard", "representation": DistillConfig.representation,
                "series_stride": DistillConfig.stride, **preset,
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
                                stride=TRAIN_STRIDES[args.protocol], scale=args.scale)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--data: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"--data / --seq-len / --pred-len: {exc}") from None
    if getattr(args, "preset", None) == "condtsf" and args.samples is None:
        per_channel, channels = condtsf_samples(data, stride=args.series_stride)
        args.samples = per_channel * channels
        print(f"ddtime: preset condtsf: {per_channel} synthetic windows per channel x {channels} "
              f"channel{'s' if channels > 1 else ''} = samples={args.samples}")
    return data


def condtsf_update(args: argparse.Namespace) -> CondTSFUpdate:
    """CondTSF's update as the command line sets it (used by the runs that switch it on)."""
    teacher_optimizer = None if args.condtsf_teacher_optimizer == "method" else args.condtsf_teacher_optimizer
    return CondTSFUpdate(beta=args.condtsf_beta, teacher_every=args.condtsf_teacher_every,
                         teacher_optimizer=teacher_optimizer)


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
        stride=args.series_stride, iterations=args.iterations, lr=args.syn_lr,
        condtsf=condtsf_update(args) if condtsf else None, ddtime_terms=ddtime_terms(args) if ddtime else None,
        term_balance=args.term_balance, model=args.model, seed=args.seed, device=args.device,
        select_every=args.select_every, select_initial=args.select_initial, checkpoint_every=args.checkpoint_every,
        quiet=args.quiet)
    try:
        config.build_method()  # a bad --method-option fails before any training
    except ValueError as exc:
        option = "--student-side" if str(exc).startswith("student_side") else "--method-option"
        raise ValueError(f"{option}: {exc}") from None
    return config


def expert_request(args: argparse.Namespace) -> ExpertRequest:
    """The experts of a resolved command line: ``--experts`` (default OUT/experts), their number,
    epochs and seed (``--expert-seed``, default ``--seed``)."""
    directory = pathlib.Path(args.experts) if args.experts else pathlib.Path(args.out) / "experts"
    seed = args.seed if args.expert_seed is None else args.expert_seed
    return ExpertRequest(directory=directory, num_experts=args.num_experts, epochs=args.expert_epochs, seed=seed,
                          lr=args.expert_lr)


def evaluation_config(args: argparse.Namespace, protocol: str) -> EvaluationConfig:
    """The evaluation of a resolved command line under ``protocol`` (the data's)."""
    return EvaluationConfig(students=args.students, models=args.eval_models,
                            recipe=student_recipe(protocol, epochs=args.eval_epochs, lr=args.eval_lr,
                                                  test_stride=args.test_stride, optimizer=args.eval_optimizer),
                            full_epochs=args.full_epochs)
