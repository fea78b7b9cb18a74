"""Cost of DDTime's terms on one distillation iteration: base vs base+DDTime, fused vs reference ops.

    python -m pytest bench/bench_overhead.py --benchmark-enable -s    # pytest-benchmark table + overhead
    python bench/bench_overhead.py [--rounds 15] [--method mtt] [--setting condtsf|standard]

Settings (one iteration: K = 20 unrolled student steps, 2 updates per iteration, DLinear, DDTime's
terms with the default grad-norm balance): ``condtsf`` = CondTSF's preset (24 -> 24, a series of 6
windows a channel, 42 channel-independent windows), ``standard`` = 96 -> 96, S = 10 windows of 7
channels; ETTh1 when the shared data folder is present, else the built-in generated dataset. The
experts (2 x 3 epochs) only provide parameter vectors; their contents do not change the cost. The
variants are timed round-robin (so machine load hits them alike) and compared by their medians:
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

import ddtime.driver.data  # noqa: E402
from ddtime.driver.distill import DDTimeTerms, DistillConfig, DistillRun  # noqa: E402
from ddtime.driver.experts import train_experts  # noqa: E402

VARIANTS = {
    "base": {"ddtime": None},
    "ddtime-fused": {"ddtime": DDTimeTerms(loss_impl="fused")},
    "ddtime-reference": {"ddtime": DDTimeTerms(loss_impl="reference")},
}


SETTINGS = {
    "condtsf": {"data": {"protocol": "condtsf", "seq_len": 24, "pred_len": 24, "stride": 4},
                "config": {"samples": 42, "representation": "series", "stride": 4}},
    "standard": {"data": {"seq_len": 96, "pred_len": 96}, "config": {"samples": 10}},
}


def load_setting(expert_dir, setting: str = "condtsf") -> tuple:
    """(data, experts, config options) of the benchmark."""
    name = "ETTh1" if ddtime.driver.data.shared_data_dir() is not None else None
    data = ddtime.driver.data.load_forecasting(name, **SETTINGS[setting]["data"])
    experts = train_experts(data, num_experts=2, expert_epochs=3, out_dir=expert_dir, quiet=True)
    return data, experts, SETTINGS[setting]["config"]


def make_runs(data, experts, options: dict, method: str = "mtt", variants=tuple(VARIANTS)) -> dict[str, DistillRun]:
    """One warmed-up :class:`DistillRun` per variant."""
    runs = {}
    for name in variants:
        config = DistillConfig(method=method, iterations=10**6, quiet=True, **options, **VARIANTS[name])
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


def report(medians: dict[str, float], *, rounds: int, data, method: str, samples: int) -> str:
    base = medians["base"]
    lines = [f"One {method} iteration, {data.name} {data.protocol} {data.seq_len}->{data.pred_len} DLinear, "
             f"S={samples} windows, K=20, 2 updates, torch threads {torch.get_num_threads()}, "
             f"median of {rounds} rounds:", "",
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
    data, experts, options = setting
    run = make_runs(data, experts, options, variants=(variant,))[variant]
    counter = iter(range(10_000, 10**6))
    benchmark.pedantic(lambda: run.iteration(next(counter)), rounds=5, iterations=1, warmup_rounds=1)


def test_overhead(setting):
    """Interleaved medians and the overhead percentages (printed; run with -s)."""
    data, experts, options = setting
    medians = measure(make_runs(data, experts, options), rounds=7)
    print("\n" + report(medians, rounds=7, data=data, method="mtt", samples=options["samples"]))
    assert all(v > 0 for v in medians.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--method", default="mtt", choices=("mtt", "ftd", "datm", "dm"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="condtsf")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, experts, options = load_setting(tmp, args.setting)
        medians = measure(make_runs(data, experts, options, args.method), args.rounds)
    table = report(medians, rounds=args.rounds, data=data, method=args.method, samples=options["samples"])
    table = f"Command: `python bench/bench_overhead.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n\n" + table
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
