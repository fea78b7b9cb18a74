"""``ddtime distill``: experts (trained on demand), one distillation, its evaluation, results and plots
(:func:`ddtime.driver.pipeline.run_distillation`; the files it writes are listed there).

Under ``torchrun`` (``torchrun --nproc-per-node P -m ddtime distill ...``) the ranks split the experts
and each update's trajectories (:mod:`ddtime.driver.distill.distributed`); rank 0 writes and reports."""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

from ddtime.driver.commands.options import (add_common_options, distill_config, evaluation_config, expert_request,
                                            load_data, resolve)
from ddtime.driver.commands.types import positive_float, positive_int
from ddtime.driver.distill import METHODS
from ddtime.driver.distill.distributed import is_writer, torchrun_group
from ddtime.driver.experts import dist_rank_world
from ddtime.driver.pipeline import experts_for, run_distillation, teacher_experts_for

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime distill``."""
    parser.description = "Distil a forecasting dataset into a few synthetic windows and evaluate them."
    add_common_options(parser)
    parser.add_argument("--method", type=str.lower, choices=sorted(METHODS), default="mtt", help="base method")
    parser.add_argument("--condtsf", action="store_true", help="CondTSF's value update every 3rd iteration")
    parser.add_argument("--ddtime", action="store_true", help="add DDTime's value and ISIB terms")
    parser.add_argument("--out", default="runs/distill", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--trajectories-per-update", type=positive_int, default=None,
                        help="trajectories averaged into each update, a multiple of the torchrun ranks "
                             "(default: one per rank)")
    parser.add_argument("--dist-timeout", type=positive_float, default=1800.0,
                        help="under torchrun: seconds a rank waits in a collective before the job ends")
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime distill``: print what it chose, distil, evaluate, print the test MSE beside the references."""
    with torchrun_group(args.device, timeout_s=args.dist_timeout) as device:
        return _run(args, device)


def _run(args: argparse.Namespace, device: str) -> int:
    chosen = resolve(args)
    world = dist_rank_world()[1]
    trajectories = args.trajectories_per_update or world
    if trajectories % world:  # before any expert training
        raise ValueError(f"--trajectories-per-update: {trajectories} trajectories do not split evenly over {world} "
                         f"ranks; use a multiple of {world}")
    if chosen and is_writer():
        kind = (f"preset {args.preset}" if args.preset else
                "quick defaults (built-in generated dataset)" if args.data is None else "defaults")
        print(f"ddtime distill: {kind}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    data = load_data(args)  # under a preset also sets --samples from the dataset
    config = distill_config(args, method=args.method, condtsf=args.condtsf, ddtime=args.ddtime)
    config = dataclasses.replace(config, device=device, trajectories_per_update=trajectories)
    out = pathlib.Path(args.out)
    t_experts = time.perf_counter()
    method, request = config.build_method(), expert_request(args)
    experts = experts_for(data, config, method, request, quiet=args.quiet)
    teachers = teacher_experts_for(data, config, method, request, quiet=args.quiet)
    results = run_distillation(data, config, experts=experts, out_dir=out,
                               evaluation=evaluation_config(args, data.protocol), resume=args.resume,
                               data_arg=args.data or "", expert_seconds=time.perf_counter() - t_experts,
                               teacher_experts=teachers)
    if not is_writer():
        return 0
    print(f"{data.name} {data.protocol} {data.seq_len}->{data.pred_len} {args.method}"
          f"{' +CondTSF' if args.condtsf else ''}{' +DDTime' if args.ddtime else ''}: "
          f"test MSE {results['test_mse']:.4f} +/- {results['test_mse_std']:.4f}, MAE {results['test_mae']:.4f} | "
          f"random subset MSE {results['random_subset_test_mse']:.4f} | "
          f"full data MSE {results['full_data_test_mse']:.4f} | {results['total_seconds']:.1f}s -> {out}")
    return 0
