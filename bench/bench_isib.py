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

Peak memory (bench/results_writer.peak_tensor_bytes): the largest amount of CPU tensor memory
allocated at once during one call, above the level at its start (so the input is excluded; outputs,
workspaces and x.grad count), from torch.profiler's allocation records. Memory outside c10's CPU
allocator (MKL's packing buffers, Python objects) is not counted. Machine description and the
result files come from bench/results_writer.write_comparison.
"""
import os
import time

import pytest
import torch
from results_writer import VARIANTS, loss_variants, peak_tensor_bytes, write_comparison

import ddtime
from ddtime.reference import isib_loss_reference

CHANNELS, LENGTH, TAU = 7, 192, 1.0
SAMPLES = [int(s) for s in os.environ.get("DDTIME_BENCH_SAMPLES", "10,100,1000,4096").split(",")]
THREADS = int(os.environ.get("DDTIME_BENCH_THREADS", "0"))  # 0: torch's default
if THREADS:
    torch.set_num_threads(THREADS)
NAME = f"isib_cpu_{THREADS}thread" if THREADS else "isib_cpu"
MODES = ("forward", "forward+backward")
RECORDS = []

torch._dynamo.config.recompile_limit = 64  # one static-shape specialisation per (S, grad mode)


loss_function = loss_variants(ddtime.isib_loss, isib_loss_reference)


def rounds_for(seconds_per_call):
    """(rounds, iterations): rounds of >= ~2 ms, about 2 s per case, at least 3 rounds. Short rounds
    let some of them run between the scheduler's preemptions on a shared machine, so the minimum
    (which the speed-ups use) stays the cost of a call rather than of a call plus a wait."""
    iterations = max(1, int(0.002 / seconds_per_call))
    rounds = int(min(1000, max(3, 2.0 / (seconds_per_call * iterations))))
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


def write_results():
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
    write_comparison(
        NAME,
        RECORDS,
        baseline="fused",
        others=[v for v in VARIANTS if v != "fused"],
        title="isib_loss on CPU: fused kernel vs eager and compiled reference",
        notes=notes,
        extra_machine={
            "blas": "MKL" if torch.backends.mkl.is_available() else "other",
            "load_average_at_end": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
        },
    )


@pytest.fixture(scope="module", autouse=True)
def results_file():
    yield
    if RECORDS:
        write_results()
