"""Distillation over torchrun ranks: B trajectories per update on P ranks, ETTh1 ``--preset condtsf``.

    # every (P, B, seed) cell; each finished cell is appended to OUT/cells.jsonl, a rerun skips those
    python bench/bench_torchrun.py run --experts EXPERTS --out OUT --cells 1x1 1x2 1x4 2x2 2x4 --seeds 0 1 2
    # the all-reduce alone on 2 gloo ranks (synchronised by a barrier), by buffer size
    python bench/bench_torchrun.py allreduce --out OUT
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


def _fit_line(xs, ys):
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def table(args) -> None:
    from results_writer import machine

    out = pathlib.Path(args.out)
    records = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    cells = sorted({(r["world"], r["batch"]) for r in records})
    lines = [f"# Distillation over torchrun ranks: ETTh1 `--preset condtsf`, {records[0]['iterations']} iterations",
             "", "Commands (one torch thread per process):", "",
             "```", *args.commands, "```", "",
             f"Machine: {json.dumps(machine())}", "",
             "| ranks P | trajectories / update B | seeds | test MSE (mean +- std over seeds) | s / iteration "
             "(median) | in the all-reduce (rank 0 / rank 1) |", "|---|---|---|---|---|---|"]
    per_iteration = {}
    for world, batch in cells:
        rows = [r for r in records if (r["world"], r["batch"]) == (world, batch)]
        mse = [r["test_mse"] for r in rows]
        spi = statistics.median(r["seconds_per_iteration"] for r in rows)
        per_iteration[(world, batch)] = spi
        loop = [r["collective"][0]["iteration_seconds"] for r in rows]
        share = " / ".join(f"{statistics.fmean(r['collective'][k]['seconds'] / t for r, t in zip(rows, loop)):.1%}"
                           for k in range(world)) if world > 1 else "-"
        std = statistics.stdev(mse) if len(mse) > 1 else 0.0
        lines.append(f"| {world} | {batch} | {len(rows)} | {statistics.fmean(mse):.4f} +- {std:.4f} | {spi:.4f} | "
                     f"{share} |")
    refs = records[0]
    lines += ["", f"References (seed {refs['seed']}): random real subset {refs['random_subset_test_mse']:.4f}, "
                  f"full data {refs['full_data_test_mse']:.4f}."]
    ones = sorted((b, s) for (w, b), s in per_iteration.items() if w == 1)
    if len(ones) > 1:
        shared, per_trajectory = _fit_line([b for b, _ in ones], [s for _, s in ones])
        lines += ["", f"One process: s / iteration = {shared:.4f} + {per_trajectory:.4f} x B (least squares over "
                      f"B = {', '.join(str(b) for b, _ in ones)})."]
    reduce_file = out / "allreduce.json"
    if reduce_file.exists():
        reduce = json.loads(reduce_file.read_text())
        floats = max(c["floats"] for r in records for c in r["collective"])
        lines += ["", f"The all-reduce alone on 2 gloo ranks of this machine (median of {reduce['reps']}, after a "
                      "barrier), by buffer size in float32 values; the run's buffer holds "
                      f"{floats} values:", "", "| floats | seconds |", "|---|---|"]
        lines += [f"| {n} | {s:.6f} |" for n, s in reduce["median_seconds"].items()]
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
    args = parser.parse_args()
    {"run": run_cells, "allreduce": allreduce, "table": table}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
