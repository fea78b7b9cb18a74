"""``ddtime experts``: train expert trajectories into a directory (resumable; under torchrun in parallel)."""
from __future__ import annotations

import argparse

import torch

from ddtime.driver.commands.groups import (add_data_options, add_expert_options, add_expert_recipe_options,
                                           add_run_options)
from ddtime.driver.commands.options import FULL_DEFAULTS, fill_defaults
from ddtime.driver.data import load_forecasting
from ddtime.driver.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
from ddtime.driver.distill.distributed import torchrun_group
from ddtime.driver.experts import dist_rank_world, train_experts
from ddtime.driver.presets import preset_defaults

__all__ = ["configure_parser", "run"]

#: collectives of expert training wait this long for the slowest rank (a rank may train for hours)
EXPERT_COLLECTIVE_TIMEOUT_S = 24 * 3600.0


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime experts``."""
    parser.description = ("Train expert trajectories (resumable; parallel under torchrun: rank r trains the "
                          "experts i with i mod world_size = r).")

    add_data_options(parser)
    add_expert_options(parser, directory=False)
    add_expert_recipe_options(parser)
    parser.add_argument("--out", required=True, help="output directory (manifest.json + expert_NNN.safetensors)")
    add_run_options(parser, threads=False)
    parser.set_defaults(seed=0)
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime experts``: train (or resume) the experts and print their test MSE / MAE."""
    preset = preset_defaults(args.preset) if args.preset else {}
    defaults = {"protocol": "standard", "num_experts": FULL_DEFAULTS["num_experts"],
                "expert_epochs": FULL_DEFAULTS["expert_epochs"]}
    chosen = fill_defaults(args, {**defaults, **preset})
    if args.preset:
        print(f"ddtime experts: preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    seq_len = args.seq_len if args.seq_len is not None else DEFAULT_LENGTHS[args.protocol]
    pred_len = args.pred_len if args.pred_len is not None else DEFAULT_LENGTHS[args.protocol]
    stride = args.train_stride if args.train_stride is not None else TRAIN_STRIDES[args.protocol]
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    with torchrun_group(device, timeout_s=EXPERT_COLLECTIVE_TIMEOUT_S) as device:
        data = load_forecasting(args.data, protocol=args.protocol, seq_len=seq_len, pred_len=pred_len,
                                stride=stride, scale=args.scale)
        store = train_experts(data, model=args.model, num_experts=args.num_experts,
                              expert_epochs=args.expert_epochs, optimizer=args.optimizer, lr=args.expert_lr,
                              momentum=args.momentum, batch_size=args.batch_size, rho=args.rho,
                              gsam_alpha=args.gsam_alpha, out_dir=args.out,
                              device=device, seed=args.seed, quiet=args.quiet)
        if dist_rank_world()[0] == 0:
            summary = {}
            for key in ("test_mse", "test_mae"):
                values = torch.tensor([e[key] for e in store.entries], dtype=torch.float64)
                summary[key] = f"{values.mean():.4f} +- {values.std(unbiased=False):.4f}"
            print(f"{store.num_experts} experts ({args.model}, {data.name}, {args.protocol} {seq_len}->{pred_len}) "
                  f"in {store.out_dir}: test MSE {summary['test_mse']}, MAE {summary['test_mae']}")
    return 0
