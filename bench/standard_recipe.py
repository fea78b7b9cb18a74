"""The measurements that chose ``--preset standard`` (ETTh1, 96 -> 96, DLinear): ``bench/results/standard_recipe.md``.

    python bench/standard_recipe.py curve  --lr 5e-4 --epochs 40 --experts 10   # an expert's val / test MSE per epoch
    python bench/standard_recipe.py random                                      # 10 random windows, several students
    python bench/standard_recipe.py cell --experts-dir DIR --options '{"student_lr": 0.01, "learn_lr": true}'

``curve`` trains experts (``ddtime experts``, SGD momentum 0.9, batch 64) into ``runs/recipe`` and
prints expert 0's validation / test MSE along its trajectory. ``random`` judges 10 random training
windows (seeds 0, 1) by two students each of TSLib's Adam recipe (lr 1e-3) and of SGD momentum 0.9 at
several rates, all with early stopping on validation. ``cell`` distils MTT (base) from the experts
in DIR with the given method options and judges the set by 3 SGD students (lr ``--eval-lr``) and by 3
of TSLib's Adam students. One torch thread.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ddtime.driver.commands import main as ddtime_main  # noqa: E402
from ddtime.driver.data import load_forecasting  # noqa: E402
from ddtime.driver.distill import DistillConfig  # noqa: E402
from ddtime.driver.distill.checkpoint import load_synthetic  # noqa: E402
from ddtime.driver.evaluation import evaluate_synthetic, random_subset, student_recipe  # noqa: E402
from ddtime.driver.evaluation.students import build_student  # noqa: E402
from ddtime.driver.experts import ExpertStore  # noqa: E402
from ddtime.driver.models import assign_flat_params, build_model  # noqa: E402
from ddtime.driver.pipeline import EvaluationConfig, run_distillation  # noqa: E402
from ddtime.driver.training import evaluate, train_model  # noqa: E402


def data():
    return load_forecasting("ETTh1", protocol="standard", seq_len=96, pred_len=96, stride=1)


def curve(lr: float, epochs: int, experts: int) -> None:
    out = pathlib.Path("runs/recipe") / f"experts-lr{lr:g}-e{epochs}"
    if ddtime_main(["experts", "--data", "ETTh1", "--num-experts", str(experts), "--expert-epochs", str(epochs),
                    "--lr", str(lr), "--out", str(out), "--quiet"]) != 0:
        raise SystemExit("experts failed")
    d = data()
    trajectory = ExpertStore(out).trajectory(0)
    probe = build_model("dlinear", seq_len=96, pred_len=96, channels=d.window_channels)
    points = []
    for epoch in range(0, trajectory.shape[0], max(1, trajectory.shape[0] // 12)):
        model = assign_flat_params(probe, trajectory[epoch])
        points.append((epoch, round(evaluate(model, d.windows("val"), seq_len=96)["mse"], 4),
                       round(evaluate(model, d.windows("test"), seq_len=96)["mse"], 4)))
    print(f"expert 0, SGD lr {lr:g}: (epoch, val MSE, test MSE) {points}")


def recipes() -> dict:
    out = {"adam 1e-3": student_recipe("standard")}
    for lr in (1e-3, 3e-3, 1e-2, 3e-2):
        out[f"sgd {lr:g}"] = student_recipe("standard", optimizer="sgd", lr=lr)
    return out


def random_windows() -> None:
    d = data()
    for seed in (0, 1):
        windows, scores = random_subset(d, 10, seed=seed), {}
        for name, recipe in recipes().items():
            runs = [train_model(build_student("dlinear", d, k, None), d, train_windows=windows, seed=k, quiet=True,
                                **recipe) for k in range(2)]
            scores[name] = (round(sum(r["val_mse"] for r in runs) / 2, 4), round(sum(r["test_mse"] for r in runs) / 2, 4))
        print(f"random subset seed {seed}: (val MSE, test MSE) {scores}")


def cell(experts_dir: str, options: dict, eval_lr: float, out: str) -> None:
    d = data()
    config = DistillConfig(method="mtt", method_options=options, quiet=True)
    t0 = time.time()
    sgd = student_recipe("standard", optimizer="sgd", lr=eval_lr)
    r = run_distillation(d, config, experts=ExpertStore(experts_dir), out_dir=out,
                         evaluation=EvaluationConfig(students=3, recipe=sgd))
    windows, _ = load_synthetic(pathlib.Path(out) / "synthetic.safetensors")
    adam = evaluate_synthetic(windows, d, num_students=3, seed=0)["dlinear"]
    print(f"MTT {options}: SGD students {r['test_mse']:.4f} (random {r['random_subset_test_mse']:.4f}) | Adam students "
          f"{adam['synthetic']['test_mse']:.4f} (random {adam['random_subset']['test_mse']:.4f}) | validation "
          f"{r['val_history']} | {time.time() - t0:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("curve", "random", "cell"))
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--experts", type=int, default=10)
    parser.add_argument("--experts-dir", default=None)
    parser.add_argument("--options", default="{}")
    parser.add_argument("--eval-lr", type=float, default=1e-2)
    parser.add_argument("--out", default="runs/recipe/cell")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "curve":
        curve(args.lr, args.epochs, args.experts)
    elif args.what == "random":
        random_windows()
    else:
        cell(args.experts_dir, json.loads(args.options), args.eval_lr, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
