"""Value loss on CPU: the fused op against the eager reference and torch.compile of the reference.

    python -m pytest bench/bench_value_loss.py --benchmark-enable -p no:cacheprovider

writes bench/results/value_loss_cpu.{json,md} (times, speed-ups, peak tensor memory, machine);
with THP_MEM_ALLOC_ENABLE=1 (c10 then backs every large tensor with transparent huge pages, which
removes most page-fault time from all three variants) the files are value_loss_cpu_thp.{json,md}.
Without --benchmark-enable (the project default) every case runs once as a smoke test and no result
file is written.

Cases: forecasts [B, N, H] in float32, alpha 0.8, dim -1, mean reduction. "forward" evaluates the loss
on inputs without grad; "forward+backward" has the student require grad (the teacher detached, as in
DDTime) and runs loss.backward(), the student's .grad cleared before each round.
"""
import os

import pytest
import torch
from results_writer import VARIANTS, loss_variants, peak_tensor_bytes, write_comparison

import ddtime
from ddtime.reference import value_loss_reference

SHAPES = [(10, 7, 96), (256, 7, 96), (64, 321, 336), (32, 862, 720)]
ROUNDS = {(10, 7, 96): 300, (256, 7, 96): 100, (64, 321, 336): 10, (32, 862, 720): 5}
MODES = ("forward", "forward+backward")

RECORDS = []
# one compiled function serves 4 shapes x 2 grad modes, each a static-shape specialisation
torch._dynamo.config.recompile_limit = 64


loss_function = loss_variants(ddtime.value_loss, value_loss_reference)


@pytest.fixture(scope="module", autouse=True)
def results_file():
    yield
    if RECORDS:
        write_comparison(
            "value_loss_cpu_thp" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "value_loss_cpu",
            RECORDS,
            baseline="fused",
            others=["eager", "compiled"],
            title="value_loss on CPU: fused kernel vs eager and compiled reference",
            notes=(
                "float32 [B, N, H], alpha 0.8, dim -1, mean reduction. eager = "
                "ddtime.reference.value_loss_reference, compiled = torch.compile(value_loss_reference, "
                "fullgraph=True, dynamic=False) (Inductor). forward+backward: the student requires grad, the teacher does not. "
                "Speed-ups are min(other) / min(fused). Peak MB: largest CPU tensor memory allocated at once "
                "during one call, from torch.profiler memory events (inputs excluded)."
            ),
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", VARIANTS)
def test_value_loss(benchmark, variant, shape, mode):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(shape, generator=generator)
    teacher = torch.randn(shape, generator=generator)
    loss = loss_function(variant)

    if mode == "forward":
        setup = None

        def run():
            with torch.no_grad():
                loss(student, teacher)

    else:
        student.requires_grad_()

        def setup():
            student.grad = None

        def run():
            loss(student, teacher).backward()

    for _ in range(2):  # compiles the compiled variant, warms the caches of all
        if setup:
            setup()
        run()
    if setup:
        setup()
    peak = peak_tensor_bytes(run)

    benchmark.group = f"{'x'.join(map(str, shape))} {mode}"
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS[shape], warmup_rounds=1, iterations=1)
    if not benchmark.disabled:
        stats = benchmark.stats.stats
        RECORDS.append(
            {
                "case": f"{tuple(shape)} {mode}",
                "variant": variant,
                "shape": list(shape),
                "mode": mode,
                "min_ms": stats.min * 1e3,
                "median_ms": stats.median * 1e3,
                "mean_ms": stats.mean * 1e3,
                "rounds": stats.rounds,
                "peak_mb": peak / 2**20,
            }
        )
