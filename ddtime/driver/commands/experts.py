"""``ddtime experts``: train expert trajectories into a directory (resumable; under torchrun in parallel)."""
from __future__ import annotations

import argparse
import datetime
import os

import torch
import torch.distributed as dist

from ddtime.driver.commands.types import fraction, non_negative_int, positive_float, positive_int
from ddtime.driver.data import PROTOCOLS, load_forecasting
from ddtime.driver.data.protocols import DEFAULT_LENGTHS, TRAIN_STRIDES
from ddtime.driver.experts import EXPERT_OPTIMIZERS, dist_rank_world, train_experts
from ddtime.driver.models import MODELS
from ddtime.driver.commands.options import FULL_DEFAULTS, fill_defaults
from ddtime.driver.presets import PRESETS, preset_defaults
from ddtime.driver.training import DEFAULT_LR

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime experts``."""
    parser.description = ("Train expert trajectories (resumable; parallel under torchrun: rank r trains the "
                          "experts i with i mod world_size = r).")

    parser.add_argument("--data", default=None,
                        help="dataset name (e.g. ETTh1) or CSV path; omitted = built-in generated dataset")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="every default of a published setting (condtsf: CondTSF's buffer.py); explicit "
                             "options win")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default standard")
    parser.add_argument("--seq-len", type=positive_int, default=None,
                        help="look-back (default 96 standard, 24 condtsf)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="horizon (default 96 standard, 24 condtsf)")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="step between training windows (default 1 standard, 4 condtsf as CondTSF)")
    parser.add_argument("--model", default="dlinear", choices=sorted(MODELS), type=str.lower)
    parser.add_argument("--num-experts", type=positive_int, default=None, help="default 40")
    parser.add_argument("--expert-epochs", type=positive_int, default=None, help="default 80")
    parser.add_argument("--optimizer", choices=EXPERT_OPTIMIZERS, default="sgd", help="sam for FTD")
    parser.add_argument("--lr", type=positive_float, default=None, help=f"default {DEFAULT_LR['sgd']}")
    parser.add_argument("--momentum", type=fraction, default=0.9)
    parser.add_argument("--rho", type=positive_float, default=0.05, help="SAM radius (--optimizer sam)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--out", required=True, help="output directory (manifest.json + expert_NNN.safetensors)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="under torchrun, cuda means cuda:LOCAL_RANK")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="expert i uses seed + i")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime experts``: train (or resume) the experts and print their test MSE / MAE."""
    preset = preset_defaults(args.preset) if args.preset else {}
    if "expert_lr" in preset:  # --lr here is the experts' rate
        preset["lr"] = preset.pop("expert_lr")
    defaults = {"protocol": "standard", "num_experts": FULL_DEFAULTS["num_experts"],
                "expert_epochs": FULL_DEFAULTS["expert_epochs"]}
    chosen = fill_defaults(args, {**defaults, **preset})
    if args.preset:
        print(f"ddtime experts: preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    seq_len = args.seq_len if args.seq_len is not None else DEFAULT_LENGTHS[args.protocol]
    pred_len = args.pred_len if args.pred_len is not None else DEFAULT_LENGTHS[args.protocol]
    stride = args.stride if args.stride is not None else TRAIN_STRIDES[args.protocol]
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    own_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=datetime.timedelta(hours=24))
        own_group = True
    try:
        data = load_forecasting(args.data, protocol=args.protocol, seq_len=seq_len, pred_len=pred_len,
                                            stride=stride)
        store = train_experts(data, model=args.model, num_experts=args.num_experts,
                              expert_epochs=args.expert_epochs, optimizer=args.optimizer, lr=args.lr,
                              momentum=args.momentum, batch_size=args.batch_size, rho=args.rho, out_dir=args.out,
                              device=device, seed=args.seed, quiet=args.quiet)
        if dist_rank_world()[0] == 0:
            summary = {}
            for key in ("test_mse", "test_mae"):
                values = torch.tensor([e[key] for e in store.entries], dtype=torch.float64)
                summary[key] = f"{values.mean():.4f} +- {values.std(unbiased=False):.4f}"
            print(f"{store.num_experts} experts ({args.model}, {data.name}, {args.protocol} {seq_len}->{pred_len}) "
                  f"in {store.out_dir}: test MSE {summary['test_mse']}, MAE {summary['test_mae']}")
    finally:
        if own_group:
            dist.destroy_process_group()
    return 0
