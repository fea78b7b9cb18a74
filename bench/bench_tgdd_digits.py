"""DM and TGDD on scikit-learn's 8x8 digits: test accuracy, distillation time and peak memory.

    python bench/bench_tgdd_digits.py [--iterations 300] [--ipc 1 10 50] [--seeds 5] [--threads 1] [--experts DIR]

Writes bench/results/tgdd_digits.json (every number and the settings) and .md (tables).

Per images-per-class (IPC) setting, four training sets of the same size: a random real subset
(also the initialisation of DM and TGDD), DM, TGDD (constraint weight alpha * F / 2048, the
default) and TGDD with alpha as is ("unscaled", F = 128 here), plus the full training split.
Each set trains ``--seeds`` fresh ConvNets (:func:`ddtime.driver.classification.evaluate_synthetic`:
SGD 0.01, momentum 0.9, 300 epochs, lr / 10 at half) tested on the real test split.

Experts: TGDD's trajectories are trained into an expert directory
(:func:`ddtime.driver.classification.train_trajectories`): a temporary one by default, or
``--experts DIR`` to keep them (a second run then reuses the stored experts and its pretraining
time covers only the ones it trained).

Time: wall time of the whole distillation loop (``--iterations`` iterations) without profiler;
TGDD's expert pretraining is timed separately. Peak memory: torch.profiler (CPU,
``profile_memory=True``) over a separate run of ``--profile-iterations`` iterations, the peak of
live tensor bytes allocated after the profiler started (net allocations of every op, in time
order): the working memory of distillation, without the data and experts loaded before.
tracemalloc is not used: it does not see torch's CPU tensor allocations.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from ddtime.driver.classification import (classifier_network, distill_classifier, evaluate_synthetic,  # noqa: E402
                                          load_digits, train_trajectories)

METHODS = {  # label -> distill_classifier() keyword arguments (None: no distillation)
    "random": None,
    "DM": {"method": "dm"},
    "TGDD": {"method": "tgdd"},
    "TGDD (alpha unscaled)": {"method": "tgdd", "alpha_reference_features": None},
}


def profiled_peak_bytes(fn) -> int:
    """Peak of live tensor bytes allocated while ``fn()`` runs, from torch.profiler's CPU memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = []
    for event in prof.events():
        delta = event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        if delta:
            changes.append((event.time_range.start, delta))
    live = peak = 0
    for _, delta in sorted(changes):
        live += delta
        peak = max(peak, live)
    return peak


def fmt_acc(r: dict) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def write_markdown(path: Path, out: dict) -> None:
    s = out["settings"]
    ipcs = s["ipc"]
    lines = [
        "# DM and TGDD on digits (8x8, 10 classes)",
        "",
        f"Command: `{out['command']}`  ",
        f"Date: {out['date']}; torch {out['environment']['torch']}, {s['threads']} threads, "
        f"load average at start/end {out['environment']['loadavg_start']} / {out['environment']['loadavg_end']}; "
        f"whole run {out['total_seconds']:.0f} s.",
        "",
        f"Data: `sklearn.datasets.load_digits`, stratified 80/20 split (seed {s['data_seed']}): "
        f"{s['n_train']} train / {s['n_test']} test images, standardised. "
        f"Encoder/expert/evaluation network: ConvNet (2 blocks conv3x3-instancenorm-relu-avgpool, width 32, "
        f"F = {s['embed_dim']} features). Experts: {s['num_trajectories']} trajectories x {s['expert_epochs']} "
        f"epochs ({s['expert_epochs'] + 1} snapshots), SGD 0.01, momentum 0.9, batch 64; pretraining "
        f"{out['experts']['seconds']:.1f} s, expert test accuracy "
        f"{100 * min(out['experts']['test_acc']):.1f}-{100 * max(out['experts']['test_acc']):.1f} %.",
        f"Distillation: {s['iterations']} iterations, one SGD (momentum 0.5) update per class per iteration, "
        f"lr per class = lr_per_sample x IPC (lr_per_sample 1.0 for both, chosen on a validation split carved "
        f"from the training split: tgdd_lr_validation.md), 256 real images per class and update, "
        f"expert region 6; TGDD alpha 2.5 for IPC <= 10, else 0.5, weighted by F / 2048 = "
        f"{s['embed_dim'] / 2048:.4g} (\"unscaled\": alpha as is). Synthetic sets start from the random subset.",
        f"Evaluation: {s['eval_seeds']} fresh ConvNets per set (SGD 0.01, momentum 0.9, weight decay 5e-4, "
        f"{s['eval_epochs']} epochs, lr / 10 at half, batch 256, no augmentation), mean ± std of test accuracy (%).",
        "",
        "## Test accuracy (%)",
        "",
        "| method | " + " | ".join(f"IPC {i}" for i in ipcs) + " |",
        "|---|" + "---|" * len(ipcs),
    ]
    by = {(r["method"], r["ipc"]): r for r in out["results"]}
    for m in METHODS:
        lines.append(f"| {m} | " + " | ".join(fmt_acc(by[(m, i)]) for i in ipcs) + " |")
    lines.append(f"| full data ({s['n_train']} images) | " + " | ".join(fmt_acc(out["full_data"]) for _ in ipcs)
                 + " |")
    lines += ["", f"## Distillation time (s, {s['iterations']} iterations) and peak memory (MiB, torch.profiler, "
              f"{s['profile_iterations']} iterations)", "",
              "| method | " + " | ".join(f"IPC {i} time | IPC {i} memory" for i in ipcs) + " |",
              "|---|" + "---|---|" * len(ipcs)]
    for m in METHODS:
        if METHODS[m] is None:
            continue
        cells = [f"{by[(m, i)]['distill_seconds']:.1f} | {by[(m, i)]['peak_memory_mib']:.2f}" for i in ipcs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"TGDD's time excludes the expert pretraining ({out['experts']['seconds']:.1f} s, once for all IPC).",
              "Random subsets and the full data need no distillation. Wall times come from a machine shared with "
              "other jobs (load average above): runs of equal cost can differ by 2x; the memory figures are "
              "deterministic.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--profile-iterations", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5, help="evaluation networks per set")
    p.add_argument("--eval-epochs", type=int, default=300)
    p.add_argument("--trajectories", type=int, default=5)
    p.add_argument("--expert-epochs", type=int, default=20)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tgdd_digits")
    p.add_argument("--experts", type=Path, default=None,
                   help="expert directory to train into / reuse (default: a temporary directory)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.experts is None:
        with tempfile.TemporaryDirectory(prefix="tgdd_digits_experts_") as tmp:
            return run(args, argv, Path(tmp))
    return run(args, argv, args.experts)


def run(args: argparse.Namespace, argv, experts_dir: Path) -> None:
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = [round(v, 2) for v in os.getloadavg()]
    seeds = tuple(range(args.seeds))
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # pay torch.optim's one-time imports before timing
    data = load_digits(seed=args.data_seed)
    evaluate = lambda x, y: evaluate_synthetic(x, y, data, seeds=seeds, epochs=args.eval_epochs)  # noqa: E731

    t0 = time.perf_counter()
    store = train_trajectories(data, num_trajectories=args.trajectories, epochs=args.expert_epochs,
                               seed=args.data_seed, quiet=args.quiet, out_dir=experts_dir)
    test_acc = [entry["test_acc"] for entry in store.entries]
    experts = {"seconds": time.perf_counter() - t0, "test_acc": test_acc}
    print(f"experts: {experts['seconds']:.1f} s, test acc {test_acc}", flush=True)

    results = []
    for ipc in args.ipc:
        for label, kwargs in METHODS.items():
            row = {"ipc": ipc, "method": label}
            if kwargs is None:
                x, y = data.random_subset(ipc, seed=args.data_seed)
            else:
                common = dict(ipc=ipc, experts=store, seed=args.data_seed, quiet=True, **kwargs)
                res = distill_classifier(data, iterations=args.iterations, **common)
                x, y = res.x, res.y
                peak = profiled_peak_bytes(lambda: distill_classifier(data, iterations=args.profile_iterations, **common))
                row.update(distill_seconds=res.seconds, peak_memory_mib=peak / 2 ** 20, settings=res.settings,
                           final_matching=res.matching[-1] if res.matching else None)
            ev = evaluate(x, y)
            row.update(mean=ev["mean"], std=ev["std"], accs=ev["accs"])
            results.append(row)
            extra = f", {row['distill_seconds']:.1f} s, {row['peak_memory_mib']:.2f} MiB" if kwargs else ""
            print(f"IPC {ipc:>3} {label:<22} {fmt_acc(ev)}{extra}", flush=True)

    full = evaluate(data.train_x, data.train_y)
    print(f"full data {fmt_acc(full)}", flush=True)
    out = {
        "command": "python bench/bench_tgdd_digits.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                        "loadavg_start": load_start, "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"ipc": args.ipc, "iterations": args.iterations, "profile_iterations": args.profile_iterations,
                     "eval_seeds": args.seeds, "eval_epochs": args.eval_epochs,
                     "num_trajectories": args.trajectories, "expert_epochs": args.expert_epochs,
                     "data_seed": args.data_seed, "threads": args.threads, "n_train": int(data.train_x.shape[0]),
                     "n_test": int(data.test_x.shape[0]), "embed_dim": classifier_network(store.settings).embed_dim,
                     "memory": "torch.profiler CPU profile_memory: peak live tensor bytes during a "
                               f"{args.profile_iterations}-iteration distillation"},
        "experts": experts,
        "full_data": full,
        "results": results,
        "total_seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    write_markdown(args.out.with_suffix(".md"), out)
    print(f"wrote {args.out.with_suffix('.json')} and .md ({out['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
