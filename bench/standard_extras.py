"""Two extras of the standard 96 -> 96 protocol on ETTh1 (``--preset standard``, DLinear experts).

    python bench/standard_extras.py cross --seeds 1            # item 3: other student architectures
    python bench/standard_extras.py size --sizes 10,50 --seeds 1  # item 4: larger synthetic sets
    python bench/standard_extras.py cross --table-only         # the tables from the cells on disk

``cross``: the DLinear-distilled sets of ``bench/reproduce_standard.py`` (its ETTh1 cells with
``--num-experts 10 --students 3``, read from ``--sets``, never rerun here) judged by fresh
iTransformer and PatchTST students (``ddtime.driver.models``), each under two recipes: the preset's
SGD (momentum 0.9, lr 1e-2, early stopping on validation) and TSLib's Adam at the backbone's rate
(lr 1e-4 for both transformers, as TSLib's ETTh1 scripts; constant, since an epoch of 10 windows is
one step; early stopping on validation). Beside them: the random subset of each seed (the same S = 10
real windows as that seed's random reference, ``random_subset(data, 10, seed=seed)``) under the same
students, and each architecture trained on the full data (``full_data_baseline``: TSLib's recipe,
one model per seed, timed).

``size``: ``ddtime distill --preset standard`` at S in ``--sizes`` windows, MTT base and MTT +DDTime,
on the shared experts (``--experts --expert-seed 0 --num-experts 10 --students 3``); each cell's
results.json holds the set's score, the random subset of the same S and the seconds (the time per
distillation iteration is ``(distill_seconds - select_seconds) / iterations``). S = 10 is read from
the reproduce_standard cell with the same settings when it exists (``--sets``).

Every cell is cached under ``--work`` in a folder or file named by a hash of its settings and of the
package source (``results_writer.source_hash()``): a finished cell is never recomputed, so rerunning
a command only fills the gaps. The table of the part is rewritten after every cell.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
for path in (REPO, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

import reproduce_standard  # noqa: E402
from reproduce_standard import fmt_seeds  # noqa: E402
from cell_cache import distill_settings  # noqa: E402
from ddtime.driver.atomic import atomic_write_bytes  # noqa: E402
from results_writer import machine, source_hash  # noqa: E402

DATASET = "ETTh1"
NUM_EXPERTS, STUDENTS = 10, 3
#: the reproduce_standard source hashes its ETTh1 cells (and experts) were computed at
SETS_SOURCES = ("3a6394cb6eb3", "036bbe81706b")
EXPERTS = f"runs/standard_preset/{DATASET}/experts-3a6394cb6eb3"
ARCHS = ("itransformer", "patchtst")
ARCH_TITLES = {"dlinear": "DLinear", "itransformer": "iTransformer", "patchtst": "PatchTST"}
RECIPES = {"sgd": {"optimizer": "sgd", "lr": 1e-2}, "adam": {"optimizer": "adam", "lr": 1e-4}}
RECIPE_TITLES = {"sgd": "the preset's SGD students (momentum 0.9, lr 1e-2, batch 64, at most 300 epochs, early "
                        "stopping on validation, patience 20)",
                 "adam": "TSLib's Adam at the transformers' rate (lr 1e-4 constant, batch 64, at most 300 epochs, "
                         "early stopping on validation, patience 20)"}
#: HDT (AAAI 2026), ETTh1 96 -> 96, test MSE of its set judged by iTransformer (secondary source)
HDT_CROSS = {"itransformer": 0.421}
SIZE_VARIANTS = ("base", "+DDTime")


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def header(part: str, argv: list[str], codes: list[str]) -> list[str]:
    only = (" The cells were computed by the same command without --table-only (the seeds, sizes or sets widened "
            "step by step); --table-only only reads them." if "--table-only" in argv else "")
    return [f"Command: `python bench/standard_extras.py {part} {' '.join(argv)}` (source {', '.join(codes)}; "
            f"torch {torch.__version__}, Python {platform.python_version()}, {machine()['cpu']}, one torch "
            f"thread, a shared 2-core CPU with other experiments running: seconds are indicative).{only}", ""]


class Sets:
    """The reproduce_standard ETTh1 cells (DLinear-distilled sets, S = 10) under ``work``."""

    def __init__(self, work: pathlib.Path, codes: list[str]):
        self.codes = codes
        self.runner = reproduce_standard.Runner(work, 1, ["--num-experts", str(NUM_EXPERTS)], STUDENTS, NUM_EXPERTS)

    def find(self, method: str, variant: str, seed: int) -> pathlib.Path | None:
        """The finished cell's folder, or None."""
        return self.runner.finished(DATASET, method, variant, seed, self.codes)


# cross -------------------------------------------------------------------------------------------
class Cross:
    """Cells of the cross-architecture part: one JSON file per (what, architecture, recipe, seed)."""

    def __init__(self, work: pathlib.Path, code: str, epochs: int | None = None):
        self.dir, self.code, self.epochs = work / DATASET / "cross", code, epochs
        self._data = None

    @property
    def data(self):
        if self._data is None:
            from ddtime.driver.data import load_forecasting
            self._data = load_forecasting(DATASET, protocol="standard", seq_len=96, pred_len=96, stride=1)
        return self._data

    def path(self, what: str, model: str, recipe: str | None, seed: int, code: str | None = None) -> pathlib.Path:
        """``what``: a set folder's name, ``random`` or ``full`` (``recipe`` None: TSLib's full-data recipe)."""
        key = {"what": what, "model": model, "recipe": RECIPES.get(recipe), "students": STUDENTS, "seed": seed,
               "source": code or self.code, **({"epochs": self.epochs} if self.epochs else {})}
        return self.dir / f"{what}-{model}-{recipe or 'tslib'}-seed-{seed}-{_hash(key)}.json"

    def run(self, what: str, model: str, recipe: str | None, seed: int, set_dir: pathlib.Path | None = None) -> dict:
        from ddtime.driver.distill.checkpoint import load_synthetic
        from ddtime.driver.evaluation import full_data_baseline, random_subset, student_recipe, train_students

        path = self.path(what, model, recipe, seed)
        if path.exists():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        if what == "full":  # not the shared cache: the time is part of the result
            stats = full_data_baseline(self.data, model=model, seed=seed, cache=False, epochs=self.epochs)
        else:
            windows = (random_subset(self.data, 10, seed=seed) if what == "random" else
                       load_synthetic(set_dir / "synthetic.safetensors")[0])
            stats = train_students(windows, self.data, model=model, num_students=STUDENTS, seed=seed,
                                   recipe=student_recipe("standard", **RECIPES[recipe], epochs=self.epochs))
        result = {**stats, "seconds": time.perf_counter() - t0, "what": what, "model": model, "recipe": recipe,
                  "seed": seed, "source": self.code}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(result).encode())
        return result


def cross_table(path: pathlib.Path, cells: dict, dlinear: dict, argv: list[str], codes: list[str], labels) -> None:
    """cells: {(label, model, recipe): [result per seed]} with label a set's row, ``random`` or ``full``;
    dlinear: {(label, recipe): [(mse, mae) per seed]} from the sets' own cells."""
    lines = ["# Cross-architecture on the standard protocol (ETTh1, 96 -> 96, sets distilled with DLinear)", "",
             *header("cross", argv, codes),
             "Test MSE / MAE (scaled test split) of fresh students trained on each DLinear-distilled set alone "
             f"(S = 10 windows; the sets of `bench/reproduce_standard.py`'s ETTh1 cells with `--num-experts "
             f"{NUM_EXPERTS} --students {STUDENTS}`, selected on validation with DLinear students); mean ± std "
             f"over seeds, each seed the mean over its {STUDENTS} students (seeds seed..seed+2). Random: the "
             "same 10 real training windows as each seed's random reference. Full data: the architecture trained "
             "on every training window with TSLib's recipe (Adam at the backbone's rate, 1e-4 for the "
             "transformers and 5e-3 for DLinear, halved every epoch from the third, batch 32, 10 epochs, "
             "patience 3), one model per seed. DLinear: the sets' own scores (reproduce_standard's preset "
             "column under SGD; under Adam its `adam.json`, whose rate is 1e-3, not 1e-4). HDT: the "
             "published number (AAAI 2026, secondary source, its own recipe).", ""]
    archs = ["dlinear", *ARCHS]
    for recipe in RECIPES:
        lines += [f"## Judged by {RECIPE_TITLES[recipe]}", "",
                  "| set | " + " | ".join(f"{ARCH_TITLES[a]} MSE | {ARCH_TITLES[a]} MAE" for a in archs) + " |",
                  "|---|" + "---|---|" * len(archs)]
        for label in ["random", *labels, "full"]:
            parts = []
            for a in archs:
                if a == "dlinear":
                    pairs = dlinear.get((label, recipe), [])
                    parts += [fmt_seeds([p[0] for p in pairs]), fmt_seeds([p[1] for p in pairs])]
                else:
                    rs = cells.get((label, a, None if label == "full" else recipe), [])
                    parts += [fmt_seeds([r["test_mse"] for r in rs]), fmt_seeds([r["test_mae"] for r in rs])]
            name = {"random": "random (10 real windows)", "full": "full data (TSLib recipe)"}.get(label, label)
            lines.append(f"| {name} | " + " | ".join(parts) + " |")
        lines.append("| HDT (published) | " + " | ".join(f"{HDT_CROSS[a]:.3f} | -" if a in HDT_CROSS else "- | -"
                                                        for a in archs) + " |")
        lines.append("")
    lines += ["## Time (seconds per seed, one thread, shared machine)", "",
              "| architecture | recipe | set (3 students) | random (3 students) | full data (1 model) | epochs per "
              "student (set) |", "|---|---|---|---|---|---|"]
    for a in ARCHS:
        for recipe in RECIPES:
            sets = [r for (label, m, rc), rs in cells.items() if m == a and rc == recipe and label not in
                    ("random", "full") for r in rs]
            rand = cells.get(("random", a, recipe), [])
            full = cells.get(("full", a, None), [])
            mean = (lambda rs: f"{statistics.fmean(r['seconds'] for r in rs):.0f}" if rs else "-")
            epochs = [run["epochs"] for r in sets for run in r["runs"]]
            lines.append(f"| {ARCH_TITLES[a]} | {recipe} | {mean(sets)} | {mean(rand)} | {mean(full)} | "
                         f"{statistics.fmean(epochs):.0f} |" if epochs else
                         f"| {ARCH_TITLES[a]} | {recipe} | {mean(sets)} | {mean(rand)} | {mean(full)} | - |")
    path.write_text("\n".join(lines) + "\n")


def run_cross(args, argv: list[str]) -> None:
    codes = [source_hash(), *(args.source_hash.split(",") if args.source_hash else [])]
    sets = Sets(pathlib.Path(args.sets), args.sets_source.split(","))
    cross = Cross(pathlib.Path(args.work), codes[0], args.epochs)
    cells: dict = {}
    dlinear: dict = {}
    rows = [(m, v) for m in args.methods.split(",") for v in args.variants.split(",")]
    labels = [f"{m.upper()}{'' if v == 'base' else ' ' + v}" for m, v in rows]
    out = pathlib.Path(args.out or BENCH / "results" / "standard_cross_architecture.md")
    archs = args.archs.split(",")

    def done(label, model, recipe, seed, what, set_dir=None):
        found = [c for c in codes if cross.path(what, model, recipe, seed, c).exists()]
        if args.table_only and not found:
            return
        if found:
            r = json.loads(cross.path(what, model, recipe, seed, found[0]).read_text())
        else:
            r = cross.run(what, model, recipe, seed, set_dir)
            print(f"{label} {model} {recipe or 'tslib'} seed {seed}: test MSE {r['test_mse']:.4f} "
                  f"({r['seconds']:.0f} s)", flush=True)
        cells.setdefault((label, model, recipe), []).append(r)
        cross_table(out, cells, dlinear, argv, codes, labels)

    for seed in range(args.seeds):  # seed-major: every set of seed 0 first
        for (method, variant), label in zip(rows, labels):
            set_dir = sets.find(method, variant, seed)
            if set_dir is None:
                print(f"{label} seed {seed}: no finished reproduce_standard cell under {args.sets}; skipped",
                      flush=True)
                continue
            res = json.loads((set_dir / "results.json").read_text())
            adam = json.loads((set_dir / "adam.json").read_text())
            dlinear.setdefault((label, "sgd"), []).append((res["test_mse"], res["test_mae"]))
            dlinear.setdefault((label, "adam"), []).append((adam["synthetic"]["test_mse"],
                                                            adam["synthetic"]["test_mae"]))
            if (label, "sgd") == (labels[0], "sgd"):  # the seed's references on DLinear, once
                dlinear.setdefault(("random", "sgd"), []).append((res["random_subset_test_mse"],
                                                                  res["random_subset_test_mae"]))
                dlinear.setdefault(("random", "adam"), []).append((adam["random_subset"]["test_mse"],
                                                                   adam["random_subset"]["test_mae"]))
                for recipe in RECIPES:
                    dlinear.setdefault(("full", recipe), []).append((res["full_data_test_mse"],
                                                                     res["full_data_test_mae"]))
            for model in archs:
                for recipe in RECIPES:
                    if (label, model, recipe) == (labels[0], model, recipe):  # references before the first set
                        done("random", model, recipe, seed, "random")
                    done(label, model, recipe, seed, set_dir.name, set_dir)
        for model in archs:
            done("full", model, None, seed, "full")


# size --------------------------------------------------------------------------------------------
def size_argv(variant: str, size: int, seed: int, experts: str, iterations: int | None = None) -> list[str]:
    return ["distill", "--preset", "standard", "--data", DATASET, "--method", "mtt",
            *(["--ddtime"] if variant == "+DDTime" else []), "--seed", str(seed), "--num-experts", str(NUM_EXPERTS),
            "--students", str(STUDENTS), "--samples", str(size), "--experts", experts, "--expert-seed", "0",
            "--threads", "1", *(["--iterations", str(iterations)] if iterations else [])]


def size_dir(work: pathlib.Path, argv: list[str], code: str) -> pathlib.Path:
    """The cell's folder: a readable name plus a hash of its resolved settings and the source hash."""
    name = f"mtt{'-ddtime' if '--ddtime' in argv else ''}-s{argv[argv.index('--samples') + 1]}-seed-" \
           f"{argv[argv.index('--seed') + 1]}"
    return work / DATASET / "size" / f"{name}-{_hash([distill_settings(argv), code])}"


def size_cell(args, variant: str, size: int, seed: int, codes: list[str], sets: Sets) -> dict | None:
    """results.json of one cell (computed unless on disk; None under --table-only when missing)."""
    from ddtime.driver.commands import main as ddtime_main

    if size == 10 and not args.iterations:
        found = sets.find("mtt", variant, seed)
        if found is not None:
            return {**json.loads((found / "results.json").read_text()), "out_dir": str(found)}
    argv = size_argv(variant, size, seed, args.experts, args.iterations)
    for code in codes:
        out = size_dir(pathlib.Path(args.work), argv, code)
        if (out / "results.json").exists():
            return {**json.loads((out / "results.json").read_text()), "out_dir": str(out)}
    if args.table_only:
        return None
    out = size_dir(pathlib.Path(args.work), argv, codes[0])
    if ddtime_main([*argv, "--out", str(out), "--quiet", "--resume"]) != 0:
        raise SystemExit(f"size cell {variant} S={size} seed {seed} failed")
    r = {**json.loads((out / "results.json").read_text()), "out_dir": str(out)}
    print(f"MTT {variant} S={size} seed {seed}: test MSE {r['test_mse']:.4f} (random "
          f"{r['random_subset_test_mse']:.4f}), {per_iteration(r):.3f} s/iteration", flush=True)
    return r


def per_iteration(r: dict) -> float:
    """Seconds per distillation iteration, the periodic selection excluded."""
    return (r["distill_seconds"] - r["select_seconds"]) / r["settings"]["iterations"]


def size_table(path: pathlib.Path, cells: dict, argv: list[str], codes: list[str]) -> None:
    """cells: {(variant, S): [results.json per seed]}."""
    sizes = sorted({s for _, s in cells})
    iterations = sorted({r["settings"]["iterations"] for rs in cells.values() for r in rs})
    lines = ["# Larger synthetic sets on the standard protocol (ETTh1, 96 -> 96, DLinear, MTT)", "",
             *header("size", argv, codes),
             "`ddtime distill --preset standard --data ETTh1 --method mtt [--ddtime] --samples S --num-experts "
             f"{NUM_EXPERTS} --students {STUDENTS} --experts {EXPERTS} --expert-seed 0`: "
             f"{', '.join(map(str, iterations))} iterations, the set selected on validation every 50. The question: "
             "DDTime's open one, whether its gain over the base holds as the set grows (its authors report that "
             "the inter-sample term converges with difficulty beyond about 20 samples). Test MSE (scaled) of the selected set, judged by the preset's "
             f"{STUDENTS} SGD DLinear students; mean ± std over seeds. Random: S random real training windows "
             "(the set's own seed) judged by the same students. Gain: base minus +DDTime (positive: DDTime "
             "better), the seeds' mean. S = 10: the cells of `bench/reproduce_standard.py` (same settings, "
             "computed at source " + ", ".join(SETS_SOURCES) + ").", "",
             "| S | random | MTT | MTT +DDTime | gain of +DDTime | full data | seeds |", "|---|---|---|---|---|---|---|"]
    for s in sizes:
        base, dd = cells.get(("base", s), []), cells.get(("+DDTime", s), [])
        rand = [r["random_subset_test_mse"] for r in base or dd]
        full = [r["full_data_test_mse"] for r in base or dd]  # one DLinear model per seed
        n = min(len(base), len(dd))
        gain = (f"{statistics.fmean(b['test_mse'] - d['test_mse'] for b, d in zip(base, dd)):+.3f}" if n else "-")
        lines.append(f"| {s} | {fmt_seeds(rand)} | {fmt_seeds([r['test_mse'] for r in base])} | "
                     f"{fmt_seeds([r['test_mse'] for r in dd])} | {gain} | {fmt_seeds(full)} | {len(base)}, {len(dd)} |")
    lines += ["", "## Time (seconds, one thread, shared machine; mean over the seeds run)", "",
              "| S | MTT s / iteration | +DDTime s / iteration | MTT selection | +DDTime selection | MTT evaluation | "
              "+DDTime evaluation |", "|---|---|---|---|---|---|---|"]
    for s in sizes:
        parts = []
        for key in ("iter", "select_seconds", "evaluate_seconds"):
            for v in SIZE_VARIANTS:
                rs = cells.get((v, s), [])
                vals = [per_iteration(r) if key == "iter" else r[key] for r in rs]
                parts.append(f"{statistics.fmean(vals):.{3 if key == 'iter' else 0}f}" if vals else "-")
        lines.append(f"| {s} | " + " | ".join(parts) + " |")
    path.write_text("\n".join(lines) + "\n")


def run_size(args, argv: list[str]) -> None:
    codes = [source_hash(), *(args.source_hash.split(",") if args.source_hash else [])]
    sets = Sets(pathlib.Path(args.sets), args.sets_source.split(","))
    out = pathlib.Path(args.out or BENCH / "results" / "standard_set_size.md")
    cells: dict = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    for seed in range(args.seeds):
        for size in sizes:
            for variant in SIZE_VARIANTS:
                r = size_cell(args, variant, size, seed, codes, sets)
                if r is not None:
                    cells.setdefault((variant, size), []).append(r)
                    size_table(out, cells, argv, codes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("cross", "size"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="mtt,datm", help="cross: the sets' methods")
    parser.add_argument("--variants", default="base,+DDTime",
                        help="cross: the sets' variants (" + ", ".join(reproduce_standard.VARIANTS) + ")")
    parser.add_argument("--archs", default=",".join(ARCHS), help="cross: student architectures")
    parser.add_argument("--sizes", default="10,50,100,200", help="size: synthetic windows S")
    parser.add_argument("--sets", default="runs/standard_preset", help="reproduce_standard's work folder")
    parser.add_argument("--sets-source", default=",".join(SETS_SOURCES),
                        help="the source hashes the reproduce_standard cells were computed at (first found wins)")
    parser.add_argument("--experts", default=EXPERTS, help="size: the experts")
    parser.add_argument("--work", default="runs/standard_extra")
    parser.add_argument("--out", default=None, help="the table (default: bench/results/"
                        "standard_cross_architecture.md or standard_set_size.md)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="cross: the students' (and full data's) maximum epochs instead of the recipes' (a smoke "
                             "test; part of the cells' key)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="size: distillation iterations instead of the preset's 300 (a smoke test)")
    parser.add_argument("--source-hash", default=None,
                        help="comma-separated earlier source hashes whose cells are reused (new cells run at the "
                             "current source)")
    parser.add_argument("--table-only", action="store_true", help="only the cells already on disk")
    args = parser.parse_args(argv)
    parser_args = argv[1:] if argv and argv[0] == args.part else [a for a in argv if a != args.part]
    unknown = [v for v in args.variants.split(",") if v not in reproduce_standard.VARIANTS]
    if unknown:
        parser.error(f"--variants: expected names from {', '.join(reproduce_standard.VARIANTS)}, got "
                     f"{', '.join(unknown)}")
    bad = [a for a in args.archs.split(",") if a not in ARCHS]
    if bad:
        parser.error(f"--archs: expected names from {', '.join(ARCHS)}, got {', '.join(bad)}")
    torch.set_num_threads(1)
    (run_cross if args.part == "cross" else run_size)(args, parser_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
