"""DM's and TGDD's learning rate on digits, chosen on a validation split carved from the training split.

    python bench/tune_tgdd_lr.py [--lrs 0.01 0.1 1.0] [--ipc 10] [--iterations 100] [--threads 1]

Digits has only train/test (``load_digits``: 1438 / 359). The tuning never sees the test split:
``data.holdout(0.2, seed=0)`` keeps 1150 training images for the experts and the distillation and
scores on the other 288 (stratified). For each method and ``lr_per_sample``: one distillation
(``--iterations``, seed 0, initialised from the random subset), then ``--seeds`` fresh ConvNets
trained on the set for ``--eval-epochs`` epochs (the evaluation recipe of
:func:`ddtime.driver.classification.evaluate_synthetic`), validation accuracy mean +- std. The
best rate per method is the default of :func:`ddtime.driver.classification.distill_classifier`.

Writes bench/results/tgdd_lr_validation.json and .md (rewritten after every cell).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ddtime.driver.classification import (distill_classifier, evaluate_synthetic, load_digits,  # noqa: E402
                                          train_trajectories)

METHODS = ("dm", "tgdd")


def write(out: Path, record: dict) -> None:
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    s = record["settings"]
    lines = ["# DM and TGDD learning rate on digits, chosen on validation (never test)", "",
             f"Command: `{record['command']}` (torch {torch.__version__}, {s['threads']} thread(s), "
             f"Python {platform.python_version()})", "",
             f"Validation: `load_digits(seed=0).holdout(0.2, seed=0)`: {s['n_train']} training images for the "
             f"experts ({s['trajectories']} x {s['expert_epochs']} epochs) and the distillation, {s['n_val']} "
             f"held-out training images scored; the test split is not used. IPC {s['ipc']}, {s['iterations']} "
             f"iterations, seed 0; {len(s['seeds'])} ConvNets x {s['eval_epochs']} epochs per set. Validation "
             "accuracy (%), mean ± std over the ConvNets.", "",
             "| lr_per_sample | " + " | ".join(m.upper() for m in METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for lr in s["lrs"]:
        cells = []
        for m in METHODS:
            r = record["results"].get(f"{m} {lr}")
            cells.append("-" if r is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}")
        lines.append(f"| {lr} | " + " | ".join(cells) + " |")
    best = record.get("best", {})
    if best:
        lines += ["", "Best on validation: " + ", ".join(f"{m.upper()} {lr}" for m, lr in best.items()) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--seeds", type=int, default=2, help="evaluation ConvNets per set")
    p.add_argument("--eval-epochs", type=int, default=150)
    p.add_argument("--trajectories", type=int, default=3)
    p.add_argument("--expert-epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tgdd_lr_validation")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_digits(seed=0).holdout(0.2, seed=0)
    seeds = tuple(range(args.seeds))
    record = {"command": "python bench/tune_tgdd_lr.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {"lrs": args.lrs, "ipc": args.ipc, "iterations": args.iterations, "seeds": list(seeds),
                           "eval_epochs": args.eval_epochs, "trajectories": args.trajectories,
                           "expert_epochs": args.expert_epochs, "threads": args.threads,
                           "n_train": int(data.train_x.shape[0]), "n_val": int(data.test_x.shape[0])},
              "results": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tune_tgdd_experts_") as tmp:
        store = train_trajectories(data, num_trajectories=args.trajectories, epochs=args.expert_epochs, seed=0,
                                   quiet=True, out_dir=Path(tmp))
        for method in METHODS:
            for lr in args.lrs:
                res = distill_classifier(data, ipc=args.ipc, method=method, experts=store, iterations=args.iterations,
                              lr_per_sample=lr, seed=0, quiet=True)
                ev = evaluate_synthetic(res.x, res.y, data, seeds=seeds, epochs=args.eval_epochs)
                record["results"][f"{method} {lr}"] = {"mean": ev["mean"], "std": ev["std"], "accs": ev["accs"]}
                print(f"{method} lr_per_sample {lr}: validation accuracy {100 * ev['mean']:.2f}", flush=True)
                write(args.out, record)
    record["best"] = {m: max(args.lrs, key=lambda lr: record["results"][f"{m} {lr}"]["mean"]) for m in METHODS}
    record["seconds"] = time.perf_counter() - t0
    write(args.out, record)
    print(f"best: {record['best']} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
