"""ISIB loss on CPU: the fused op against the eager matrix-product reference and torch.compile of it.

    python -m pytest bench/bench_isib.py --benchmark-enable -p no:cacheprovider

writes bench/results/isib_cpu.{json,md} (times, speed-ups, peak tensor memory, machine, shapes).
DDTIME_BENCH_THREADS=1 sets torch's thread count for all variants and names the files
isib_cpu_1thread.{json,md}; DDTIME_BENCH_SAMPLES=10,100 restricts the sample counts (a quick run; it
overwrites the files with those rows only). Without --benchmark-enable (the project default) every
case runs once as a smoke test and no result file is written.

Cases: x = [S, 7, 192] float32 (N*L = 7*192, DDTime's 7-channel ETT windows of 96 + 96 steps),
tau 1, S in 10, 100, 1000, 4096. "forward" evaluates the loss under torch.no_grad(); "forward+backward"
has x require grad and runs loss.backward(), x.grad cleared before each call.
Variants: fused = ddtime.isib_loss; eager = ddtime.reference.isib_loss_reference; compiled =
torch.compile(isib_loss_reference, fullgraph=True, dynamic=False) (Inductor).

Peak memory: the largest amount of CPU tensor memory allocated at once during one call, above the
level at its start (so the input is excluded; outputs, workspaces and x.grad count). It is read from
torch.profiler's allocation records (profile_memory=True): every allocation and free through c10's
CPU allocator -- eager ATen ops, Inductor's buffers and allocations inside the ddtime kernels -- with
the allocator's running total. Memory outside that allocator (MKL's packing buffers, Python objects)
is not counted.
"""
import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import ddtime
from ddtime.reference import isib_loss_reference

CHANNELS, LENGTH, TAU = 7, 192, 1.0
SAMPLES = [int(s) for s in os.environ.get("DDTIME_BENCH_SAMPLES", "10,100,1000,4096").split(",")]
THREADS = int(os.environ.get("DDTIME_BENCH_THREADS", "0"))  # 0: torch's default
if THREADS:
    torch.set_num_threads(THREADS)
NAME = f"isib_cpu_{THREADS}thread" if THREADS else "isib_cpu"
VARIANTS = ("fused", "eager", "compiled")
MODES = ("forward", "forward+backward")
RESULTS = Path(__file__).resolve().parent / "results"
RECORDS = []

torch._dynamo.config.recompile_limit = 64  # one static-shape specialisation per (S, grad mode)
_COMPILED = []


def loss_function(variant):
    if variant == "fused":
        return ddtime.isib_loss
    if variant == "eager":
        return isib_loss_reference
    if not _COMPILED:
        _COMPILED.append(torch.compile(isib_loss_reference, fullgraph=True, dynamic=False))
    return _COMPILED[0]


def peak_tensor_bytes(fn) -> int:
    """Largest CPU tensor memory allocated at once while fn() runs, above the level at its start."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == torch._C._profiler._EventType.Allocation:
            events.append((event.start_time_ns, event.extra_fields.alloc_size, event.extra_fields.total_allocated))
    if not events:
        return 0
    events.sort()
    _, first_size, first_total = events[0]
    start = first_total - first_size
    return max(0, max(total for _, _, total in events) - start)


def rounds_for(seconds_per_call):
    """(rounds, iterations): rounds of >= ~20 ms, about 2 s per case, at least 3 rounds."""
    iterations = max(1, int(0.02 / seconds_per_call))
    rounds = int(min(200, max(3, 2.0 / (seconds_per_call * iterations))))
    return rounds, iterations


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("samples", SAMPLES)
def test_isib_loss(benchmark, samples, variant, mode):
    fn = loss_function(variant)
    x = torch.randn(samples, CHANNELS, LENGTH, generator=torch.Generator().manual_seed(samples))
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(x, tau=TAU)
    else:
        x.requires_grad_()

        def call():
            x.grad = None
            fn(x, tau=TAU).backward()

    start = time.perf_counter()
    call()  # warm-up; compiles the compiled variant
    call()
    seconds = (time.perf_counter() - start) / 2
    peak = peak_tensor_bytes(call)
    rounds, iterations = rounds_for(seconds)
    benchmark.group = f"S={samples} {mode}"
    benchmark.pedantic(call, rounds=rounds, iterations=iterations)
    if benchmark.disabled:
        return
    stats = benchmark.stats.stats
    RECORDS.append({
        "case": f"S={samples} {mode}", "samples": samples, "channels": CHANNELS, "length": LENGTH,
        "variant": variant, "mode": mode, "min_ms": stats.min * 1e3, "median_ms": stats.median * 1e3,
        "mean_ms": stats.mean * 1e3, "rounds": rounds, "iterations": iterations, "peak_mb": peak / 2**20,
    })


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": _commit(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }


def write_results():
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    notes = (
        f"float32 x = [S, {CHANNELS}, {LENGTH}], tau {TAU}. eager = ddtime.reference.isib_loss_reference, "
        "compiled = torch.compile(isib_loss_reference, fullgraph=True, dynamic=False) (Inductor). "
        "forward runs under no_grad; forward+backward includes x.grad. Speed-ups are min(other) / min(fused). "
        "Peak MB: largest CPU tensor memory allocated at once during one call, from torch.profiler allocation "
        "records (input excluded). For scale: x is S*1344*4 bytes (S=4096: 21 MB), one S x S float32 matrix "
        "S^2*4 bytes (S=4096: 64 MB)."
    )
    if THREADS:
        notes += (f" DDTIME_BENCH_THREADS={THREADS}: every variant runs on {THREADS} thread(s) "
                  "(torch.set_num_threads), which keeps the comparison meaningful while other processes share "
                  "the cores (a parallel region then waits for a scheduler slice at every join).")
    (RESULTS / f"{NAME}.json").write_text(json.dumps({"machine": info, "notes": notes, "records": RECORDS},
                                                      indent=2) + "\n")
    by_case = {}
    for rec in RECORDS:
        by_case.setdefault(rec["case"], {})[rec["variant"]] = rec
    others = [v for v in VARIANTS if v != "fused"]
    head = (["case"] + [f"{v} median / min ms" for v in VARIANTS] + [f"fused vs {o}" for o in others]
            + [f"{v} peak MB" for v in VARIANTS])
    lines = [
        "# isib_loss on CPU: fused kernel vs eager and compiled reference", "",
        f"{info['date']}, commit {info['commit']}: {info['cpu']}, {info['logical_cpus']} logical CPUs, "
        f"torch {info['torch']} ({info['torch_threads']} threads, {info['cpu_capability']}, {info['blas']}), "
        f"Python {info['python']}, {info['platform']}, load average at the end "
        + ", ".join(f"{v:.1f}" for v in info["load_average"]), "",
        notes, "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
    ]
    for case, row in by_case.items():
        cells = [case]
        cells += [f"{row[v]['median_ms']:.3f} / {row[v]['min_ms']:.3f}" if v in row else "-" for v in VARIANTS]
        cells += [f"{row[o]['min_ms'] / row['fused']['min_ms']:.2f}x" if o in row and "fused" in row else "-"
                  for o in others]
        cells += [f"{row[v]['peak_mb']:.1f}" if v in row else "-" for v in VARIANTS]
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module", autouse=True)
def results_file():
    yield
    if RECORDS:
        write_results()
