"""Cost of DDTime's terms on a distillation iteration: base vs base+DDTime, fused vs reference ops.

    python -m pytest bench/bench_overhead.py --benchmark-enable -s     # pytest-benchmark tables (small)
    python bench/bench_overhead.py overhead --setting condtsf --experts DIR --rounds 300 --out FILE.md
    python bench/bench_overhead.py scaling --out FILE.md [--compile]    # resumable, one cell a line

``overhead``: one MTT iteration (K = 20 unrolled student steps, 2 updates per iteration, DLinear,
DDTime's terms with the default grad-norm balance, value term on the labels) in three variants
(base, ddtime-fused, ddtime-reference), timed round-robin (so machine load hits them alike) on the
thread's CPU time (``time.thread_time``: at one torch thread all the work runs on the calling
thread, and a co-tenant's load does not inflate it) and on the wall clock, and compared by their
medians: overhead = (t_variant - t_base) / t_base. Settings: ``condtsf`` =
CondTSF's preset (ETTh1, 24 -> 24, the series of 6 windows a channel, 42 channel-independent
windows, 40 experts x 80 epochs from the store); ``standard`` = ETTh1 96 -> 96, S = 10 windows of
7 channels (40 experts x ``--expert-epochs``). The experts are trained into ``--experts`` once
(``ensure_experts``) and reused. Beside the iteration: the terms' own cost per update
(``DistillRun._term_gradients``: teacher forecast, both terms and their gradients on the
synthetic parameters) against the base update, in microseconds.

``scaling``: the terms alone (teacher forecast given) at S in {10, 100, 1000}, N in {7, 321},
L in {48, 192}: fused (the loop's path: forward + backward kernels), reference (plain PyTorch +
one autograd pass) and, with ``--compile``, ``torch.compile`` of the reference; the peak extra
memory of one call (resident memory above the inputs: ``/proc`` VmHWM after a reset, malloc
returning every block over 64 KiB to the system, one subprocess a cell); and the terms' share of
an MTT iteration of that shape (two updates; DLinear on the generated series with N channels).
Times are thread CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import ddtime  # noqa: E402
import ddtime.driver.data  # noqa: E402
from ddtime.driver.distill import DDTimeTerms, DistillConfig, DistillRun, MethodOutput  # noqa: E402
from ddtime.driver.experts import ensure_experts  # noqa: E402

VARIANTS = {
    "base": {"ddtime_terms": None},
    "ddtime-fused": {"ddtime_terms": DDTimeTerms(loss_impl="fused")},
    "ddtime-reference": {"ddtime_terms": DDTimeTerms(loss_impl="reference")},
}

SETTINGS = {
    "condtsf": {"data": {"protocol": "condtsf", "seq_len": 24, "pred_len": 24, "stride": 4},
                "config": {"samples": 42, "representation": "series", "stride": 4}, "expert_epochs": 80},
    "standard": {"data": {"seq_len": 96, "pred_len": 96}, "config": {"samples": 10}, "expert_epochs": 8},
}
NUM_EXPERTS = 40
SCALING = [(s, n, length) for s in (10, 100, 1000) for n in (7, 321) for length in (48, 192)]


# ---- overhead of an iteration ----------------------------------------------------------------
def load_setting(expert_dir, setting: str = "condtsf", *, num_experts: int = NUM_EXPERTS,
                 expert_epochs: int | None = None, quiet: bool = True) -> tuple:
    """(data, experts, config options): ETTh1 when the shared data folder is present, else the
    generated dataset; the experts from ``expert_dir`` (trained there when missing)."""
    name = "ETTh1" if ddtime.driver.data.shared_data_dir() is not None else None
    data = ddtime.driver.data.load_forecasting(name, **SETTINGS[setting]["data"])
    epochs = expert_epochs or SETTINGS[setting]["expert_epochs"]
    experts = ensure_experts(data, directory=expert_dir, num_experts=num_experts, expert_epochs=epochs, quiet=quiet)
    return data, experts, SETTINGS[setting]["config"]


def make_runs(data, experts, options: dict, method: str = "mtt", variants=tuple(VARIANTS),
              device: str = "cpu") -> dict[str, DistillRun]:
    """One warmed-up :class:`DistillRun` per variant."""
    runs = {}
    for name in variants:
        config = DistillConfig(method=method, iterations=10**6, quiet=True, device=device, **options,
                               **VARIANTS[name])
        runs[name] = DistillRun(data, config, experts=experts)
        runs[name].iteration(0)  # warm-up (allocations, lazy imports, the experts read into memory)
    return runs


def measure_both(runs: dict[str, DistillRun], rounds: int) -> dict[str, dict[str, float]]:
    """``{"cpu": medians, "cpu-min": minima, "wall": medians}``: the same rounds on the thread's CPU
    time (which a co-tenant's load inflates less; the torch work runs on this thread at one torch
    thread) and on the wall clock; the minimum is the round least disturbed by other jobs."""
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            run.iteration(1 + r)
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        for run in runs.values():
            if len(run.history) > 10_000:  # keep the history short: the runs are endless
                run.flush_history()
                del run.history[:]
    return {"cpu": {k: statistics.median(v) for k, v in cpu.items()},
            "cpu-min": {k: min(v) for k, v in cpu.items()},
            "wall": {k: statistics.median(v) for k, v in wall.items()}}


def term_cost(runs: dict[str, DistillRun], rounds: int, clock=time.thread_time) -> dict[str, tuple[float, float]]:
    """(median, minimum) microseconds (``clock``) of the terms' part of one update
    (``_term_gradients``: teacher forecast, both terms, their gradients on the synthetic
    parameters), interleaved."""
    times: dict[str, list[float]] = {name: [] for name in runs if name != "base"}
    for _ in range(rounds):
        for name in times:
            run = runs[name]
            out = MethodOutput(loss=torch.zeros(()))
            names = [k for k, w in run.terms.weights.items() if w != 0]
            t0 = clock()
            run._term_gradients(out, names, False)
            times[name].append(clock() - t0)
    return {name: (1e6 * statistics.median(values), 1e6 * min(values)) for name, values in times.items()}


def environment() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return (f"Machine: {cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), torch threads "
            f"{torch.get_num_threads()}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"ddtime {ddtime.__version__}")


def report(medians: dict[str, dict[str, float]], terms_us: dict[str, tuple[float, float]], *, rounds: int, data, method: str,
           samples: int, num_experts: int, expert_epochs: int) -> str:
    """Markdown: per variant and estimator (thread CPU median and minimum, wall median) the
    iteration, the added time and the overhead; the terms' own cost per update beside the base update."""
    lines = [f"One {method} iteration, {data.name} {data.protocol} {data.seq_len}->{data.pred_len} DLinear, "
             f"S={samples} windows, K=20, 2 updates, {num_experts} experts x {expert_epochs} epochs, "
             f"median of {rounds} interleaved rounds:", "",
             "| variant | clock | ms / iteration | added ms / iteration | overhead vs base |", "|---|---|---|---|---|"]
    labels = {"cpu": "thread CPU, median", "cpu-min": "thread CPU, minimum", "wall": "wall, median"}
    for clock, label in labels.items():
        base = medians[clock]["base"]
        for name, value in medians[clock].items():
            added = "-" if name == "base" else f"{1e3 * (value - base):+.3f}"
            overhead = "-" if name == "base" else f"{100 * (value - base) / base:+.2f}%"
            lines.append(f"| {name} | {label} | {1e3 * value:.3f} | {added} | {overhead} |")
    base, low = medians["cpu"]["base"], medians["cpu-min"]["base"]
    lines += ["", f"Per update (thread CPU time, median / minimum): base update {1e6 * base / 2:.0f} / "
                  f"{1e6 * low / 2:.0f} us; the terms' own cost (`DistillRun._term_gradients`: teacher forecast, both "
                  "terms and their gradients on the synthetic parameters; interleaved calls): "
              + ", ".join(f"{k.removeprefix('ddtime-')} {m:.0f} / {n:.0f} us ({100 * m / (1e6 * base / 2):.2f}% / "
                          f"{100 * n / (1e6 * low / 2):.2f}% of the base update)" for k, (m, n) in terms_us.items())
              + "."]
    if {"ddtime-fused", "ddtime-reference"} <= set(medians["cpu"]):
        ratios = []
        for clock, label in labels.items():
            t = medians[clock]
            fused, ref = t["ddtime-fused"] - t["base"], t["ddtime-reference"] - t["base"]
            ratios.append(f"{ref / fused:.1f}x ({label})" if fused > 0 else f"n/a ({label}: fused within noise)")
        own = [terms_us["ddtime-reference"][i] / terms_us["ddtime-fused"][i] for i in (0, 1)]
        lines.append(f"Reference / fused added time per iteration: {', '.join(ratios)}; the terms' own cost: "
                     f"{own[0]:.1f}x (median), {own[1]:.1f}x (minimum).")
    return "\n".join(lines) + "\n"


# ---- scaling of the terms --------------------------------------------------------------------
def _scaling_inputs(s: int, n: int, length: int):
    g = torch.Generator().manual_seed(0)
    windows = torch.randn(s, n, length, generator=g)
    teacher = torch.randn(s, n, length // 2, generator=g)
    return windows, teacher


def _terms_call(impl: str, terms: DDTimeTerms, seq_len: int):
    """``call(windows, teacher)`` -> the terms and their gradients: the loop's path (fused,
    reference) or torch.compile of the reference's forward with its compiled backward."""
    if impl != "compile":
        return lambda w, t: terms.gradients(w, seq_len=seq_len, teacher=t)
    from ddtime.reference import isib_loss_reference, value_loss_reference

    forward = torch.compile(lambda labels, x, t: (value_loss_reference(labels, t, alpha=terms.alpha),
                                                  isib_loss_reference(x, tau=terms.tau)))

    def both(w, t):
        labels, x = w[..., seq_len:].detach().requires_grad_(True), w.detach().requires_grad_(True)
        value, isib = forward(labels, x, t)
        return (value.detach(), isib.detach()), torch.autograd.grad([value, isib], [labels, x])

    return both


def _rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return -1


def scaling_cell(s: int, n: int, length: int, impl: str, min_seconds: float = 1.0) -> dict:
    """Thread CPU seconds per call (median) and peak extra resident bytes of one call of the terms."""
    torch.set_num_threads(1)
    windows, teacher = _scaling_inputs(s, n, length)
    terms = DDTimeTerms(loss_impl="reference" if impl == "compile" else impl)
    call = _terms_call(impl, terms, length // 2)
    call(windows, teacher)  # warm-up / compilation
    times, t_end = [], time.perf_counter() + min_seconds
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 50):
        t0 = time.thread_time()
        call(windows, teacher)
        times.append(time.thread_time() - t0)
    peak = -1
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident size
        before = _rss("VmRSS")
        call(windows, teacher)
        peak = _rss("VmHWM") - before
    except OSError:
        pass
    return {"S": s, "N": n, "L": length, "impl": impl, "seconds": statistics.median(times), "calls": len(times),
            "peak_bytes": peak}


def base_iteration(s: int, n: int, length: int, workdir: pathlib.Path, rounds: int = 5) -> float:
    """Median seconds of an MTT base iteration on S windows of the generated series (N channels, L)."""
    from ddtime.driver.data import generate_seasonal
    from ddtime.driver.experts import train_experts

    torch.set_num_threads(1)
    csv = workdir / f"seasonal_{n}.csv"
    if not csv.exists():
        generate_seasonal(length=4000, channels=n).to_csv(csv, index=False)
    data = ddtime.driver.data.load_forecasting(str(csv), seq_len=length // 2, pred_len=length // 2)
    experts = train_experts(data, num_experts=1, expert_epochs=6, out_dir=workdir / f"experts_{n}_{length}",
                            quiet=True)
    run = make_runs(data, experts, {"samples": s}, variants=("base",))["base"]
    return measure_both({"base": run}, rounds)["cpu"]["base"]


def scaling(out: pathlib.Path, impls: tuple[str, ...], workdir: pathlib.Path) -> None:
    """Every missing cell of the scaling table (one subprocess each), appended to ``out.jsonl``."""
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["S"], r["N"], r["L"], r["impl"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for s, n, length in SCALING:
        for impl in (*impls, "base-iteration"):
            if (s, n, length, impl) in done:
                continue
            code = (f"import json, pathlib, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import bench_overhead as b; "
                    + (f"print(json.dumps({{'S': {s}, 'N': {n}, 'L': {length}, 'impl': 'base-iteration', "
                       f"'seconds': b.base_iteration({s}, {n}, {length}, pathlib.Path({str(workdir)!r}))}}))"
                       if impl == "base-iteration" else
                       f"print(json.dumps(b.scaling_cell({s}, {n}, {length}, {impl!r})))"))
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                record = {"S": s, "N": n, "L": length, "impl": impl, "error": proc.stderr.strip().splitlines()[-1]}
            else:
                record = json.loads(proc.stdout.strip().splitlines()[-1])
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(record, flush=True)


def scaling_table(records: list[dict]) -> str:
    cells = {(r["S"], r["N"], r["L"], r["impl"]): r for r in records}
    impls = [i for i in ("fused", "reference", "compile") if any(k[3] == i for k in cells)]
    head = " | ".join(f"{i} ms / update | {i} share | {i} peak MiB" for i in impls)
    lines = [f"| S | N | L | base iteration ms | {head} |", "|---|---|---|---|" + "---|---|---|" * len(impls)]
    for s, n, length in SCALING:
        base = cells.get((s, n, length, "base-iteration"), {}).get("seconds")
        row = [str(s), str(n), str(length), f"{1e3 * base:.1f}" if base else "-"]
        for impl in impls:
            r = cells.get((s, n, length, impl))
            if r is None or "error" in r:
                row += ["-" if r is None else f"failed: {r['error'][:60]}", "-", "-"]
                continue
            share = f"{100 * 2 * r['seconds'] / (base + 2 * r['seconds']):.1f}%" if base else "-"
            peak = f"{r['peak_bytes'] / 2**20:.1f}" if r["peak_bytes"] >= 0 else "n/a"
            row += [f"{1e3 * r['seconds']:.3f}", share, peak]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ---- pytest-benchmark ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: stable timings on a shared machine (small tensors gain little)
    yield load_setting(tmp_path_factory.mktemp("experts"), "condtsf", num_experts=4, expert_epochs=8)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_iteration(benchmark, setting, variant):
    """pytest-benchmark timing of one iteration per variant (condtsf setting, 4 experts)."""
    data, experts, options = setting
    run = make_runs(data, experts, options, variants=(variant,))[variant]
    counter = iter(range(10_000, 10**6))
    benchmark.pedantic(lambda: run.iteration(next(counter)), rounds=20, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("shape", [(10, 7, 48), (100, 321, 192)])
def test_terms(benchmark, impl, shape):
    """pytest-benchmark timing of the terms and their gradients alone."""
    windows, teacher = _scaling_inputs(*shape)
    call = _terms_call(impl, DDTimeTerms(loss_impl=impl), shape[-1] // 2)
    benchmark.pedantic(lambda: call(windows, teacher), rounds=10, iterations=1, warmup_rounds=1)


def test_overhead(setting):
    """Interleaved medians and the overhead percentages (printed; run with -s)."""
    data, experts, options = setting
    runs = make_runs(data, experts, options)
    medians, terms_us = measure_both(runs, rounds=15), term_cost(runs, rounds=50)
    print("\n" + report(medians, terms_us, rounds=15, data=data, method="mtt", samples=options["samples"],
                        num_experts=experts.num_experts, expert_epochs=experts.settings["expert_epochs"]))
    assert all(v > 0 for clock in medians.values() for v in clock.values())


# ---- script mode -----------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overhead", help="one iteration: base vs DDTime fused vs reference")
    o.add_argument("--setting", choices=sorted(SETTINGS), default="condtsf")
    o.add_argument("--rounds", type=int, default=300)
    o.add_argument("--term-rounds", type=int, default=2000, help="rounds of the terms' own cost")
    o.add_argument("--method", default="mtt", choices=("mtt", "ftd", "datm"))
    o.add_argument("--experts", default=None, help="expert directory (trained there once); default: temporary")
    o.add_argument("--expert-epochs", type=int, default=None)
    o.add_argument("--out", default=None, help="also write the table here (Markdown)")
    s = sub.add_parser("scaling", help="the terms alone over S, N, L (resumable)")
    s.add_argument("--out", required=True, help="Markdown table; the cells go to OUT.jsonl as they finish")
    s.add_argument("--compile", action="store_true", help="also torch.compile(reference)")
    s.add_argument("--workdir", default=None, help="generated series and experts of the base iterations")
    s.add_argument("--table-only", action="store_true", help="only write the table of the cells in OUT.jsonl")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = f"python bench/bench_overhead.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    if args.command == "overhead":
        with tempfile.TemporaryDirectory() as tmp:
            data, experts, options = load_setting(args.experts or tmp, args.setting, expert_epochs=args.expert_epochs,
                                                  quiet=False)
            runs = make_runs(data, experts, options, args.method)
            medians, terms_us = measure_both(runs, args.rounds), term_cost(runs, args.term_rounds)
        table = report(medians, terms_us, rounds=args.rounds, data=data, method=args.method,
                       samples=options["samples"], num_experts=experts.num_experts,
                       expert_epochs=experts.settings["expert_epochs"])
        table = f"Command: `{command}`\n\n{environment()}\n\n{table}"
    else:
        out = pathlib.Path(args.out)
        cells = out.with_suffix(out.suffix + ".jsonl") if out.suffix != ".jsonl" else out
        if not args.table_only:
            workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ddtime-scaling-"))
            workdir.mkdir(parents=True, exist_ok=True)
            scaling(cells, ("fused", "reference") + (("compile",) if args.compile else ()), workdir)
        records = [json.loads(line) for line in cells.read_text().splitlines()]
        table = (f"Command: `{command}`\n\n{environment()}\n\nThe terms alone (teacher forecast given): value term on "
                 "[S, N, L/2] labels + ISIB on [S, N, L] windows, each with its gradient; ms / update = median "
                 "thread CPU time of one call (at least 3 calls, up to 1 s); share = 2 calls / (MTT base iteration + 2 "
                 "calls); peak = resident memory above the inputs during one call.\n\n" + scaling_table(records))
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
