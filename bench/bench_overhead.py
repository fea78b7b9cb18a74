"""Cost of DDTime's terms on one distillation iteration: base vs base+DDTime, fused vs reference ops.

    python -m pytest bench/bench_overhead.py --benchmark-enable -s    # pytest-benchmark table + overhead
    python bench/bench_overhead.py [--rounds 15] [--method mtt]         # overhead table only

Setting (SPEC defaults for one iteration): MTT, K = 20 unrolled student steps, 2 updates per
iteration, DLinear 96 -> 96, S = 10 synthetic windows, ETTh1 (standard protocol) when the
shared data folder is present, else the built-in generated dataset. The experts (2 x 3 epochs)
only provide parameter vectors; their contents do not change the cost. The three variants are
timed round-robin (so machine load hits them alike) and compared by their medians:
overhead = (t_variant - t_base) / t_base. The goal is < 1% with the fused ops.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import ddtime.data  # noqa: E402
from ddtime.distill.loop import DistillConfig, DistillRun  # noqa: E402
from ddtime.experts import train_experts  # noqa: E402

VARIANTS = {
    "base": {"ddtime": False},
    "ddtime-fused": {"ddtime": True, "loss_impl": "fused"},
    "ddtime-reference": {"ddtime": True, "loss_impl": "reference"},
}


def load_setting(expert_dir) -> tuple:
    """(data, experts) of the benchmark."""
    name = "ETTh1" if ddtime.data.shared_data_dir() is not None else None
    data = ddtime.data.load_forecasting(name, seq_len=96, pred_len=96)
    experts = train_experts(data, num_experts=2, expert_epochs=3, out_dir=expert_dir, quiet=True)
    return data, experts


def make_runs(data, experts, method: str = "mtt", variants=tuple(VARIANTS)) -> dict[str, DistillRun]:
    """One warmed-up :class:`DistillRun` per variant (SPEC defaults otherwise)."""
    runs = {}
    for name in variants:
        options = VARIANTS[name]
        config = DistillConfig(method=method, iterations=10**6, quiet=True, **options)
        runs[name] = DistillRun(data, config, experts=experts)
        runs[name].iteration(0)  # warm-up (allocations, lazy imports)
    return runs


def measure(runs: dict[str, DistillRun], rounds: int) -> dict[str, float]:
    """Median seconds of one iteration per variant, timed round-robin."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run.iteration(1 + r)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def report(medians: dict[str, float], *, rounds: int, data_name: str, method: str) -> str:
    base = medians["base"]
    lines = [f"One {method} iteration, {data_name} 96->96 DLinear, S=10, K=20, 2 updates, "
             f"torch threads {torch.get_num_threads()}, median of {rounds} rounds:", "",
             "| variant | seconds / iteration | overhead vs base |", "|---|---|---|"]
    for name, value in medians.items():
        overhead = "-" if name == "base" else f"{100 * (value - base) / base:+.2f}%"
        lines.append(f"| {name} | {value:.4f} | {overhead} |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: stable timings on a shared machine (small tensors gain little)
    yield load_setting(tmp_path_factory.mktemp("experts"))
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_iteration(benchmark, setting, variant):
    """pytest-benchmark timing of one iteration per variant."""
    run = make_runs(*setting, variants=(variant,))[variant]
    counter = iter(range(10_000, 10**6))
    benchmark.pedantic(lambda: run.iteration(next(counter)), rounds=5, iterations=1, warmup_rounds=1)


def test_overhead(setting):
    """Interleaved medians and the overhead percentages (printed; run with -s)."""
    data, experts = setting
    medians = measure(make_runs(data, experts), rounds=7)
    print("\n" + report(medians, rounds=7, data_name=data.name, method="mtt"))
    assert all(v > 0 for v in medians.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--method", default="mtt", choices=("mtt", "ftd", "datm", "dm"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings)")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, experts = load_setting(tmp)
        medians = measure(make_runs(data, experts, args.method), args.rounds)
    table = report(medians, rounds=args.rounds, data_name=data.name, method=args.method)
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
