"""``ddtime evaluate``: fresh students (and the references) on a saved synthetic set."""
from __future__ import annotations

import argparse
import json

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.commands.groups import add_data_options, add_evaluation_options, add_run_options
from ddtime.driver.commands.types import model_list
from ddtime.driver.data import load_forecasting
from ddtime.driver.data.protocols import DEFAULT_LENGTHS
from ddtime.driver.distill import load_synthetic
from ddtime.driver.evaluation import evaluate_synthetic, student_recipe
from ddtime.driver.pipeline import EvaluationConfig

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime evaluate``."""
    parser.add_argument("--synthetic", required=True, help="synthetic set written by `ddtime distill` (safetensors)")
    parser.add_argument("--models", type=model_list, default=None,
                        help="comma-separated student architectures (default: the distillation model)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the full-data and random-subset references")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    add_data_options(parser, preset=False, omitted="the one the set was made from")
    add_evaluation_options(parser, references=False)
    add_run_options(parser, threads=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime evaluate``: print (and optionally save) the evaluation of a synthetic set."""
    windows, meta = load_synthetic(args.synthetic)
    data_arg = args.data if args.data is not None else (meta.get("data") or None)
    protocol = args.protocol or meta.get("protocol", "standard")
    seq_len = args.seq_len or int(meta.get("seq_len", DEFAULT_LENGTHS[protocol]))
    pred_len = args.pred_len or int(meta.get("pred_len", DEFAULT_LENGTHS[protocol]))
    models = args.models or model_list(meta.get("model", "dlinear"))
    scale = args.scale or meta.get("scale")  # default: the scaling the set was distilled under
    data = load_forecasting(data_arg, protocol=protocol, seq_len=seq_len, pred_len=pred_len, scale=scale)
    recipe = student_recipe(protocol, epochs=args.eval_epochs, lr=args.eval_lr, test_stride=args.test_stride,
                            optimizer=args.eval_optimizer)
    students = args.students if args.students is not None else EvaluationConfig.students
    results = evaluate_synthetic(windows, data, models=models, num_students=students, recipe=recipe,
                                 seed=args.seed, device=args.device, quiet=args.quiet,
                                 baselines=not args.no_baselines)
    for name, entry in results.items():
        synthetic = entry["synthetic"]
        line = (f"{name}: synthetic MSE {synthetic['test_mse']:.4f} +/- {synthetic['test_mse_std']:.4f}"
                f", MAE {synthetic['test_mae']:.4f}")
        if "full_data" in entry:
            line += (f" | random subset MSE {entry['random_subset']['test_mse']:.4f}"
                     f" | full data MSE {entry['full_data']['test_mse']:.4f}")
        print(line)
    if args.out:
        atomic_write_bytes(args.out, json.dumps({"synthetic": str(args.synthetic), "data": data.name,
                                                 "protocol": protocol, "seq_len": seq_len, "pred_len": pred_len,
                                                 "results": results}, indent=2).encode())
    return 0
