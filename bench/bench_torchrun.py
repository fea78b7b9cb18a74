"""Distillation over torchrun ranks: B trajectories per update on P ranks, ETTh1 ``--preset condtsf``.

    # every (P, B, seed) cell; each finished cell is appended to OUT/cells.jsonl, a rerun skips those
    python bench/bench_torchrun.py run --experts EXPERTS --out OUT --cells 1x1 1x2 1x4 2x2 2x4 --seeds 0 1 2
    # the all-reduce alone on 2 gloo ranks (synchronised by a barrier), by buffer size
    python bench/bench_torchrun.py allreduce --out OUT
    # iterations timed in rounds that alternate B (1 process) and B (2 ranks, a barrier before each)
    python bench/bench_torchrun.py timing --experts EXPERTS --out OUT --rounds 40
    # the table (bench/results/torchrun_etth1.md) from OUT
    python bench/bench_torchrun.py table --out OUT --table bench/results/torchrun_etth1.md

A cell ``PxB`` runs ``ddtime distill --data ETTh1 --preset condtsf --trajectories-per-update B`` on P
processes (``torchrun --standalone --nproc-per-node P`` for P > 1), one torch thread each, with this
script's ``rank`` mode as the entry point: the distill command itself, with the time each rank spends in
the gradient all-reduce recorded (``OUT/PxB-sS/collective_rank{r}.json``). Time per iteration is
the median over seeds of rank 0's mean time in ``DistillRun.iteration`` (teacher draws, updates, all-reduces;
not the selection or the checkpoints).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _cell_name(world: int, batch: int, seed: int) -> str:
    return f"{world}x{batch}-s{seed}"


def rank_mode(argv: list[str]) -> int:
    """``ddtime distill ARGV`` with the time in ``DistillRun.iteration`` and in ``all_reduce_sum`` recorded
    per rank."""
    import ddtime.driver.distill.distributed as distributed
    from ddtime.driver.commands import main
    from ddtime.driver.distill.loop import DistillRun

    spent = {"seconds": 0.0, "calls": 0, "floats": 0, "iteration_seconds": 0.0, "iterations": 0}
    iteration = DistillRun.iteration

    def timed_iteration(self, it):
        t0 = time.perf_counter()
        iteration(self, it)
        spent["iteration_seconds"] += time.perf_counter() - t0
        spent["iterations"] += 1

    DistillRun.iteration = timed_iteration
    reduce = distributed.all_reduce_sum

    def timed(buffer, what):
        t0 = time.perf_counter()
        reduce(buffer, what)
        spent["seconds"] += time.perf_counter() - t0
        spent["calls"] += 1
        spent["floats"] = buffer.numel()

    distributed.all_reduce_sum = timed
    status = main(["distill", *argv])
    out = pathlib.Path(argv[argv.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"collective_rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(spent) + "\n")
    return status


def run_cells(args) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "cells.jsonl"
    done = {json.loads(line)["cell"] for line in log.read_text().splitlines()} if log.exists() else set()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "DDTIME_CACHE_DIR": str(out / "cache")}
    for seed in args.seeds:  # every cell of a seed before the next seed
        for cell in args.cells:
            world, batch = (int(v) for v in cell.split("x"))
            name = _cell_name(world, batch, seed)
            if name in done:
                continue
            cell_dir = out / name
            distill = ["--data", "ETTh1", "--preset", "condtsf", "--method", args.method, "--experts", args.experts,
                       "--expert-seed", "0", "--seed", str(seed), "--trajectories-per-update", str(batch),
                       "--threads", "1", "--quiet", "--out", str(cell_dir), *args.extra]
            launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world)]
                        if world > 1 else [sys.executable])
            t0 = time.perf_counter()
            proc = subprocess.run([*launcher, str(pathlib.Path(__file__).resolve()), "rank", *distill], cwd=REPO,
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                print(f"{name}: exit {proc.returncode}, see {out / (name + '.log')}", flush=True)
                continue
            results = json.loads((cell_dir / "results.json").read_text())
            collective = [json.loads((cell_dir / f"collective_rank{r}.json").read_text()) for r in range(world)]
            iterations = results["settings"]["iterations"]
            record = {"cell": name, "world": world, "batch": batch, "seed": seed, "wall_seconds": wall,
                      "test_mse": results["test_mse"], "test_mae": results["test_mae"],
                      "random_subset_test_mse": results["random_subset_test_mse"],
                      "full_data_test_mse": results["full_data_test_mse"], "best_iteration": results["best_iteration"],
                      "iterations": iterations, "distill_seconds": results["distill_seconds"],
                      "select_seconds": results["select_seconds"],
                      "seconds_per_iteration": collective[0]["iteration_seconds"] / collective[0]["iterations"],
                      "collective": collective}
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{name}: test MSE {record['test_mse']:.4f}, {record['seconds_per_iteration']:.4f} s/iteration",
                  flush=True)


def _allreduce_rank(rank: int, world: int, init_file: str, sizes: list[int], reps: int, result: str) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    timings = {}
    for n in sizes:
        buffer = torch.randn(n)
        samples = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buffer)
            samples.append(time.perf_counter() - t0)
        timings[n] = statistics.median(samples)
    if rank == 0:
        pathlib.Path(result).write_text(json.dumps({"world": world, "reps": reps, "median_seconds": timings}) + "\n")
    dist.destroy_process_group()


def allreduce(args) -> None:
    import tempfile

    import torch.multiprocessing as mp

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_allreduce_rank, args=(r, 2, f"{tmp}/init", args.sizes, args.reps,
                                                           str(out / "allreduce.json"))) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    print((out / "allreduce.json").read_text())


def _timing_runs(experts: str, batches: list[int], rounds: int):
    """One DistillRun per B on ETTh1 under ``--preset condtsf`` (MTT, 42 series windows), iterations > rounds."""
    from ddtime.driver.data import load_forecasting
    from ddtime.driver.distill import DistillConfig
    from ddtime.driver.distill.loop import DistillRun
    from ddtime.driver.experts import ExpertStore

    data = load_forecasting("ETTh1", protocol="condtsf", seq_len=24, pred_len=24, stride=4)
    store = ExpertStore(experts)
    return {b: DistillRun(data, DistillConfig(method="mtt", samples=42, representation="series", stride=4,
                                              iterations=rounds + 1, quiet=True, select_every=0, checkpoint_every=0,
                                              trajectories_per_update=b), experts=store) for b in batches}


def _timing_rank(rank: int, world: int, init_file: str, job: dict) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    import ddtime.driver.distill.distributed as distributed

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=600))
    spent = {"seconds": 0.0, "floats": 0, "calls": 0}
    reduce = distributed.all_reduce_sum

    def timed(buffer, what):
        t0 = time.perf_counter()
        reduce(buffer, what)
        spent["seconds"] += time.perf_counter() - t0
        spent["floats"] = buffer.numel()
        spent["calls"] += 1

    distributed.all_reduce_sum = timed
    batches = [b for b in job["batches"] if b % world == 0]
    runs = _timing_runs(job["experts"], batches, job["rounds"])
    samples = {b: {"iteration": [], "allreduce": []} for b in batches}
    for it in range(job["rounds"]):
        for b, run in runs.items():
            if world > 1:
                dist.barrier()
            spent["seconds"] = 0.0
            t0 = time.perf_counter()
            run.iteration(it)
            samples[b]["iteration"].append(time.perf_counter() - t0)
            samples[b]["allreduce"].append(spent["seconds"])
    alone = []
    if world > 1:  # the same buffer reduced with both ranks ready
        buffer = torch.zeros(spent["floats"])
        for _ in range(200):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buffer)
            alone.append(time.perf_counter() - t0)
    if rank == 0:
        record = {"world": world, "rounds": job["rounds"], "floats": spent["floats"],
                  "calls_per_iteration": spent["calls"] / (job["rounds"] * len(batches)),
                  "allreduce_alone": statistics.median(alone) if alone else None,
                  "median": {b: {k: statistics.median(v) for k, v in d.items()} for b, d in samples.items()}}
        with open(job["result"], "a") as f:
            f.write(json.dumps(record) + "\n")
    if world > 1:
        dist.destroy_process_group()


def timing(args) -> None:
    import tempfile

    import torch.multiprocessing as mp

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    job = {"experts": args.experts, "batches": args.batches, "rounds": args.rounds,
           "result": str(out / "timing.jsonl")}
    for world in args.worlds:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_timing_rank, args=(r, world, f"{tmp}/init", job)) for r in range(world)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
    print((out / "timing.jsonl").read_text())


def _fit_line(xs, ys):
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def _projection(timing: list[dict], reduce: dict, ranks: int) -> list[str]:
    """Projected s / iteration on ``ranks`` ranks, one trajectory each, from the 1-process fit, the run's
    all-reduce calls per iteration and a ring all-reduce cost ``2(P-1) alpha + 2(P-1)/P 4n / beta`` fitted
    to the 2-rank all-reduce alone (``c(n) = 2 alpha + 4n / beta``)."""
    one = next(t for t in timing if t["world"] == 1)["median"]
    two = next(t for t in timing if t["world"] == 2)
    fitted, per_trajectory = _fit_line([int(b) for b in one], [v["iteration"] for v in one.values()])
    shared = max(fitted, 0.0)  # the work outside the trajectories (Adam, terms) cannot be negative
    sizes = [int(n) for n in reduce["median_seconds"]]
    intercept, slope = _fit_line(sizes, list(reduce["median_seconds"].values()))
    alpha, beta = intercept / 2, 4 / slope  # seconds per message, bytes per second
    calls, n = two["calls_per_iteration"], two["floats"]

    def comm(p, floats=n):
        return 2 * (p - 1) * alpha + 2 * (p - 1) / p * 4 * floats / beta

    lines = ["", "## Projection", "",
             f"One process, by least squares over B = {', '.join(one)}: s / iteration = {fitted:.4f} + "
             f"{per_trajectory:.4f} x B (one trajectory costs {per_trajectory:.4f} s an iteration, "
             f"{calls:g} updates; the intercept is taken as {shared:.4f}). The all-reduce alone on 2 ranks fits c(n) = {2 * alpha * 1e6:.0f} us + n x "
             f"{slope * 1e9:.2f} ns (alpha {alpha * 1e6:.0f} us a message, beta {beta / 1e9:.2f} GB/s); a ring "
             f"all-reduce on P ranks costs 2(P-1) alpha + 2(P-1)/P x 4n / beta. The run reduces n = {n} values "
             f"{calls:g} times an iteration.", "",
             "| ranks P = B | compute s / iteration (1 trajectory a rank) | all-reduce s / iteration | "
             "communication share | one process with the same B | speed-up |", "|---|---|---|---|---|---|"]
    for p in sorted({2, 4, ranks}):
        compute, reduce_time = shared + per_trajectory, calls * comm(p)
        single = shared + per_trajectory * p
        lines.append(f"| {p} | {compute:.4f} | {reduce_time:.6f} | {reduce_time / (compute + reduce_time):.2%} | "
                     f"{single:.4f} | {single / (compute + reduce_time):.2f}x |")
    # n at which the all-reduce of one update costs as much as one trajectory's share of an update
    budget = (shared + per_trajectory) / calls - 2 * (ranks - 1) * alpha
    crossover = budget * beta * ranks / (8 * (ranks - 1)) if budget > 0 else 0
    lines += ["", f"At P = {ranks} the all-reduce would take as long as the compute once the set held about "
                  f"{crossover:.3g} values ({crossover * 4 / 2**20:.0f} MiB), with this machine's alpha and beta and "
                  "this per-trajectory compute (which itself grows with the set). Electricity's CondTSF set holds "
                  "78 x 321 = 25,038 values, traffic's 70 x 862 = 60,340. The projection assumes a free core (or GPU) per "
                  "rank; alpha and beta are gloo's over this machine's loopback: NCCL between GPUs, or gloo between "
                  "machines, put their own values into the same formula."]
    return lines


def table(args) -> None:
    from results_writer import machine

    out = pathlib.Path(args.out)
    records = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    cells = sorted({(r["world"], r["batch"]) for r in records})
    lines = [f"# Distillation over torchrun ranks: ETTh1 `--preset condtsf`, MTT, {records[0]['iterations']} "
             "iterations", "", "Commands (one torch thread per process):", "",
             "```", *args.commands, "```", "",
             f"Machine: {json.dumps(machine())}", "", args.note, "",
             "## Test MSE by ranks and trajectories per update", "",
             "| ranks P | trajectories / update B | seeds | test MSE (mean +- std over seeds) | s / iteration "
             "(median over seeds) | time in the all-reduce (rank 0 / rank 1) |", "|---|---|---|---|---|---|"]
    for world, batch in cells:
        rows = [r for r in records if (r["world"], r["batch"]) == (world, batch)]
        mse = [r["test_mse"] for r in rows]
        spi = statistics.median(r["seconds_per_iteration"] for r in rows)
        loop = [r["collective"][0]["iteration_seconds"] for r in rows]
        share = " / ".join(f"{statistics.fmean(r['collective'][k]['seconds'] / t for r, t in zip(rows, loop)):.1%}"
                           for k in range(world)) if world > 1 else "-"
        std = statistics.stdev(mse) if len(mse) > 1 else 0.0
        lines.append(f"| {world} | {batch} | {len(rows)} | {statistics.fmean(mse):.4f} +- {std:.4f} | {spi:.4f} | "
                     f"{share} |")
    refs = [r for r in records if (r["world"], r["batch"]) == cells[0]]
    lines += ["", "References (mean over the seeds): random real subset "
                  f"{statistics.fmean(r['random_subset_test_mse'] for r in refs):.4f}, full data "
                  f"{statistics.fmean(r['full_data_test_mse'] for r in refs):.4f}."]
    timing_file, reduce_file = out / "timing.jsonl", out / "allreduce.json"
    timing = [json.loads(line) for line in timing_file.read_text().splitlines()] if timing_file.exists() else []
    if timing:
        lines += ["", f"## Time per iteration, rounds alternating B ({timing[0]['rounds']} rounds, median)", "",
                  "| ranks P | trajectories / update B | s / iteration | in the all-reduce (rank 0, waiting "
                  "included) | the all-reduce alone x calls |", "|---|---|---|---|---|"]
        for t in timing:
            for b, m in t["median"].items():
                alone = (f"{t['allreduce_alone'] * t['calls_per_iteration']:.6f}" if t["allreduce_alone"] else "-")
                lines.append(f"| {t['world']} | {b} | {m['iteration']:.4f} | {m['allreduce']:.4f} | {alone} |")
    if reduce_file.exists():
        reduce = json.loads(reduce_file.read_text())
        lines += ["", f"## The all-reduce alone (2 gloo ranks, median of {reduce['reps']}, after a barrier)", "",
                  "| float32 values | seconds |", "|---|---|"]
        lines += [f"| {n} | {sec:.6f} |" for n, sec in reduce["median_seconds"].items()]
        if timing:
            lines += _projection(timing, reduce, args.ranks)
    pathlib.Path(args.table).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "rank":
        return rank_mode(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run")
    p.add_argument("--experts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cells", nargs="+", default=["1x1", "1x2", "1x4", "2x2", "2x4"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--method", default="mtt")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ddtime distill options")
    p = sub.add_parser("allreduce")
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 4096, 32768, 262144, 2097152])
    p.add_argument("--reps", type=int, default=200)
    p = sub.add_parser("table")
    p.add_argument("--out", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--commands", nargs="+", default=[])
    p.add_argument("--note", default="")
    p.add_argument("--ranks", type=int, default=8, help="projection target")
    p = sub.add_parser("timing")
    p.add_argument("--experts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--worlds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    {"run": run_cells, "allreduce": allreduce, "timing": timing, "table": table}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
