"""Smoke run of the cell cache of bench/reproduce_condtsf.py on one tiny ETTh1 cell (seconds).

    DDTIME_SHARED_DATA=/path/to/csvs python bench/smoke_cell_cache.py WORK_DIR   # one line per step

Seven calls of ``reproduce_condtsf.cell`` on the same cell (2 iterations, 2 experts x 2 epochs, one
student of 2 epochs): first run, same settings, other settings, other code hash, this code again,
``fresh``, ``fresh`` again. Output of a run: ``bench/results/cell_cache_smoke.md``.
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cell_cache
from reproduce_condtsf import cell

work = pathlib.Path(sys.argv[1])
tiny = ("--protocol", "condtsf", "--representation", "series", "--samples", "7", "--num-experts", "2",
        "--expert-epochs", "2", "--students", "1", "--eval-epochs", "2", "--select-every", "0")

def run(label, iterations="2", fresh=False):
    t0 = time.perf_counter()
    r = cell("ETTh1", ["--method", "mtt"], 0, work, 1, preset="", fixed=(*tiny, "--iterations", iterations),
             fresh=fresh)
    out = pathlib.Path(r["out_dir"]) / "results.json"
    print(f"{label:<38} {time.perf_counter() - t0:6.1f} s  results.json mtime {out.stat().st_mtime_ns}  "
          f"test_mse {r['test_mse']:.4f}", flush=True)

run("1 first run (computes)")
run("2 same settings, same code (reuses)")
run("3 --iterations 3 (recomputes)", iterations="3")
real = cell_cache.source_hash
cell_cache.source_hash = lambda: "0000000000000000"
run("4 other code hash (recomputes)", iterations="3")
cell_cache.source_hash = real
run("5 back to this code (recomputes)", iterations="3")
run("6 --fresh (recomputes once)", iterations="3", fresh=True)
run("7 --fresh again, same process (reuses)", iterations="3", fresh=True)
