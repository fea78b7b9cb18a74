"""DDTime's gain over its base methods, ablations, sensitivity, diversity, cross-architecture.

    python bench/reproduce_ddtime.py --part main          # CondTSF's protocol: 4 datasets x 3 methods x 4 variants
    python bench/reproduce_ddtime.py --part standard      # standard protocol 96 -> 96, ETTh1 (3 seeds), ETTh2
    python bench/reproduce_ddtime.py --part ablation      # ETTh1, both protocols: which term does what
    python bench/reproduce_ddtime.py --part sensitivity   # ETTh1 condtsf: alpha, lambda_IS, synthetic size
    python bench/reproduce_ddtime.py --part labels        # input scale and label lag, learnable labels
    python bench/reproduce_ddtime.py --part balance       # term balance grad-norm vs none, on validation
    python bench/reproduce_ddtime.py --part diversity     # mean pairwise symmetric KL of the main table's sets
    python bench/reproduce_ddtime.py --part cross         # ETTh1 sets on 8 student architectures
    python bench/reproduce_ddtime.py --part all

Each cell is one ``ddtime distill`` in this process (``--preset condtsf`` under CondTSF's protocol:
see ``bench/reproduce_condtsf.py``, whose cells this script shares in ``runs/condtsf``; under the
standard protocol 40 experts x 80 epochs, 300 iterations, S = 10 windows, selection on validation).
Variants: base, + CondTSF's update, + DDTime's terms (alpha 0.8, lambda_val 1, lambda_IS 0.6,
tau 1, term balance grad-norm), + both. A finished cell is reused only when its key (resolved
settings and the package's code hash, ``bench/cell_cache.py``) matches, else recomputed; ``--fresh``
recomputes every cell (once per process) and the experts. Every part resumes; each part rewrites
its table in ``bench/results/`` after every cell. Gains are shown over the base method and over
the better (lower MSE) of the base method and the random real subset.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

from cell_cache import cell_key, prepare  # noqa: E402
from reproduce_condtsf import cell, data_sha256, experts_stage  # noqa: E402

RESULTS = REPO / "bench" / "results"
CONDTSF_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "exchange_rate")
STANDARD_DATASETS = ("ETTh1", "ETTh2")
METHODS = ("mtt", "ftd", "datm")
VARIANTS = {"base": [], "+CondTSF": ["--condtsf"], "+DDTime": ["--ddtime"], "+both": ["--condtsf", "--ddtime"]}
#: HDT (AAAI 2026) Table, DLinear, standard protocol 96 -> 96: published test MSE
HDT_ANCHORS = {"ETTh1": {"HDT": 0.430, "CondTSF": 0.510, "MTT": 0.521, "random": 0.945, "full data": 0.386},
               "ETTh2": {"HDT": 0.359, "CondTSF": 0.392, "full data": 0.326}}
STANDARD = ["--protocol", "standard", "--num-experts", "40", "--expert-epochs", "80", "--iterations", "300"]


class Grid:
    """Runs cells of one protocol, shares experts, writes tables."""

    fresh = False  # --fresh: recompute every cell and the experts (once per process)

    def __init__(self, protocol: str, threads: int):
        self.protocol, self.threads = protocol, threads
        self.work = pathlib.Path("runs") / protocol

    def run(self, dataset: str, options: list[str], seed: int = 0) -> dict:
        if self.protocol == "condtsf":
            experts_stage(dataset, self.work, self.threads, fresh=self.fresh)
            return cell(dataset, options, seed, self.work, self.threads, fresh=self.fresh)
        # the cells train their experts on demand into this directory: keyed like a cell
        prepare(self.work / dataset / "experts", cell_key({"experts": STANDARD, "data_sha256": data_sha256(dataset)}),
                done="manifest.json", fresh=self.fresh)
        return cell(dataset, options, seed, self.work, self.threads, preset="", fixed=STANDARD, fresh=self.fresh)


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}"


def _gain(base: list[float], other: list[float]) -> float:
    return (statistics.fmean(base) - statistics.fmean(other)) / statistics.fmean(base)


def _gain_over_best(base: list[float], random: list[float], other: list[float]) -> float:
    """Gain over the better (lower mean MSE) of the base method and the random real subset."""
    best = min(statistics.fmean(base), statistics.fmean(random))
    return (best - statistics.fmean(other)) / best


def _header(title: str, command: str, note: str) -> list[str]:
    return [f"# {title}", "", f"Command: `python bench/reproduce_ddtime.py {command}` (torch {torch.__version__}, "
            "one torch thread per cell, 2-core CPU)", "", note, ""]


# main and standard tables ---------------------------------------------------------------------
def grid_table(grid: Grid, datasets, seeds_first: int, path: pathlib.Path, title: str, command: str,
               anchors: dict | None = None, methods=METHODS) -> dict:
    """Every dataset x method x variant; returns {dataset: {method: {variant: [results per seed]}}}."""
    table: dict = {}
    for dataset in datasets:
        seeds = range(seeds_first if dataset == datasets[0] else 1)
        for method in methods:
            for variant, extra in VARIANTS.items():
                for seed in seeds:
                    r = grid.run(dataset, ["--method", method, *extra], seed)
                    entry = table.setdefault(dataset, {}).setdefault(method, {}).setdefault(variant, [])
                    entry.append(r)
                    _write_grid(table, path, title, command, anchors)
    return table


def _write_grid(table: dict, path: pathlib.Path, title: str, command: str, anchors: dict | None) -> None:
    note = ("Test MSE / MAE of the set selected on validation (under condtsf: the last 10% of the training "
            "windows, which the experts also train on), "
            "mean ± std over seeds; gain = (MSE_base - MSE) / MSE_base; gain vs best = (MSE_best - MSE) / "
            "MSE_best with MSE_best the lower of the base method's and the random real subset's mean. Beside "
            "each dataset: the random real subset (the initial stretch under condtsf; mean ± std over the "
            "seeds) and the full-data model.")
    lines = _header(title, command, note)
    wins = []
    for dataset, methods in table.items():
        first_runs = next(iter(next(iter(methods.values())).values()))
        first = first_runs[0]
        lines += [f"## {dataset}", "", f"Random real subset {_fmt([r['random_subset_test_mse'] for r in first_runs])}, "
                  f"full data {first['full_data_test_mse']:.4f}." + (
                      " Published (HDT, AAAI 2026, DLinear): " + ", ".join(f"{k} {v}" for k, v in
                                                                         anchors[dataset].items())
                      if anchors and dataset in anchors else ""), "",
                  "| method | variant | test MSE | test MAE | gain vs base | gain vs best of base, random | seeds |",
                  "|---|---|---|---|---|---|---|"]
        for method, variants in methods.items():
            base = [r["test_mse"] for r in variants.get("base", [])]
            random = [r["random_subset_test_mse"] for r in variants.get("base", [])]
            for variant, runs in variants.items():
                mse, mae = [r["test_mse"] for r in runs], [r["test_mae"] for r in runs]
                gain = f"{100 * _gain(base, mse):+.1f}%" if base and variant != "base" else "-"
                best = f"{100 * _gain_over_best(base, random, mse):+.1f}%" if base else "-"
                lines.append(f"| {method.upper()} | {variant} | {_fmt(mse)} | {_fmt(mae)} | {gain} | {best} "
                             f"| {len(runs)} |")
            if "+DDTime" in variants and "+CondTSF" in variants:
                wins.append((dataset, method, statistics.fmean(r["test_mse"] for r in variants["+DDTime"])
                             <= statistics.fmean(r["test_mse"] for r in variants["+CondTSF"])))
        lines.append("")
    gains: dict[str, list[tuple[float, float]]] = {}
    for dataset, methods in table.items():
        for method, variants in methods.items():
            base = [r["test_mse"] for r in variants.get("base", [])]
            random = [r["random_subset_test_mse"] for r in variants.get("base", [])]
            for variant, runs in variants.items():
                if base:
                    mse = [r["test_mse"] for r in runs]
                    gains.setdefault(variant, []).append((_gain(base, mse), _gain_over_best(base, random, mse)))
    lines += ["## Mean relative gain", "",
              "| variant | cells | mean gain vs base | mean gain vs best of base, random |", "|---|---|---|---|"]
    lines += [f"| {v} | {len(g)} | " + ("-" if v == "base" else f"{100 * statistics.fmean(x for x, _ in g):+.1f}%")
              + f" | {100 * statistics.fmean(y for _, y in g):+.1f}% |" for v, g in gains.items()]
    if wins:
        lines += ["", "+DDTime at or below +CondTSF: " + ", ".join(f"{d} {m.upper()} {'yes' if w else 'no'}"
                                                                  for d, m, w in wins)]
    path.write_text("\n".join(lines) + "\n")


# ablation and sensitivity ---------------------------------------------------------------------
ABLATION = {"MTT (base)": ["--method", "mtt"],
            "value term only, alpha 0 (pure MSE)": ["--method", "mtt", "--ddtime", "--alpha", "0", "--lambda-is", "0"],
            "value term only, alpha 0.8": ["--method", "mtt", "--ddtime", "--alpha", "0.8", "--lambda-is", "0"],
            "ISIB only": ["--method", "mtt", "--ddtime", "--lambda-val", "0"],
            "both (DDTime)": ["--method", "mtt", "--ddtime"]}


def ablation(threads: int) -> None:
    rows = {}
    for protocol in ("condtsf", "standard"):
        grid = Grid(protocol, threads)
        for label, options in ABLATION.items():
            rows[(protocol, label)] = grid.run("ETTh1", options)
            _write_rows(rows, RESULTS / "ddtime_ablation.md", "DDTime ablation (ETTh1, MTT, seed 0)",
                        "--part ablation", ["protocol", "variant"])
    _plot_bars(rows, RESULTS / "ddtime_ablation.png", "DDTime ablation, ETTh1 (MTT, seed 0)")


SENSITIVITY = {"alpha": [0.0, 0.3, 0.5, 0.8, 1.0], "lambda_is": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
               "windows per channel": [1, 2, 5, 10, 20]}


def sensitivity(threads: int) -> None:
    grid, rows = Grid("condtsf", threads), {}
    for knob, values in SENSITIVITY.items():
        for value in values:
            if knob == "alpha":
                options = ["--method", "mtt", "--ddtime", "--alpha", str(value)]
            elif knob == "lambda_is":
                options = ["--method", "mtt", "--ddtime", "--lambda-is", str(value)]
            else:
                options = ["--method", "mtt", "--ddtime", "--samples", str(7 * value)]
            rows[(knob, value)] = grid.run("ETTh1", options)
            _write_rows(rows, RESULTS / "ddtime_sensitivity.md",
                        "DDTime sensitivity (ETTh1, CondTSF's protocol, MTT + DDTime, seed 0; defaults alpha 0.8, "
                        "lambda_IS 0.6, 6 windows per channel)", "--part sensitivity", ["knob", "value"])
    _plot_sensitivity(rows, RESULTS / "ddtime_sensitivity.png")


def _write_rows(rows: dict, path: pathlib.Path, title: str, command: str, keys: list[str]) -> None:
    lines = _header(title, command, "Test MSE / MAE: mean ± std over 5 students.")
    lines += ["| " + " | ".join(keys) + " | test MSE | test MAE | random subset | full data |",
              "|" + "---|" * (len(keys) + 4)]
    for key, r in rows.items():
        lines.append("| " + " | ".join(str(k) for k in key) + f" | {r['test_mse']:.4f} ± {r['test_mse_std']:.4f} | "
                     f"{r['test_mae']:.4f} | {r['random_subset_test_mse']:.4f} | {r['full_data_test_mse']:.4f} |")
    path.write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_bars(rows: dict, path: pathlib.Path, title: str) -> None:
    plt = _pyplot()
    protocols = sorted({p for p, _ in rows})
    fig, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4))
    for ax, protocol in zip(axes if len(protocols) > 1 else [axes], protocols):
        labels = [label for p, label in rows if p == protocol]
        values = [rows[(protocol, label)]["test_mse"] for label in labels]
        errors = [rows[(protocol, label)]["test_mse_std"] for label in labels]
        ax.barh(range(len(labels)), values, xerr=errors, color="tab:blue")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        full = rows[(protocol, labels[0])]["full_data_test_mse"]
        ax.axvline(full, color="k", ls="--", lw=1, label=f"full data {full:.3f}")
        ax.set_xlabel("test MSE")
        ax.set_title(f"{protocol} protocol")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_sensitivity(rows: dict, path: pathlib.Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SENSITIVITY), figsize=(13, 3.5))
    for ax, knob in zip(axes, SENSITIVITY):
        points = [(v, r["test_mse"], r["test_mse_std"]) for (k, v), r in rows.items() if k == knob]
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o")
        ax.set_xlabel(knob)
        ax.set_ylabel("test MSE")
        if knob == "windows per channel":
            ax.set_xscale("log")
    fig.suptitle("DDTime sensitivity, ETTh1, CondTSF's protocol (MTT + DDTime, seed 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# term balance ---------------------------------------------------------------------------------
def balance(threads: int) -> None:
    """grad-norm (default) vs none (the plain weighted sum), scored on validation (never test)."""
    rows = []
    for protocol, datasets in (("condtsf", CONDTSF_DATASETS), ("standard", ("ETTh1",))):
        grid = Grid(protocol, threads)
        for dataset in datasets:
            for method in ("mtt", "datm"):
                pair = {tb: grid.run(dataset, ["--method", method, "--ddtime", *(["--term-balance", "none"]
                                                                                 if tb == "none" else [])])
                        for tb in ("grad-norm", "none")}
                rows.append((protocol, dataset, method, pair))
                lines = _header("Term balance: grad-norm vs none (plain sum), + DDTime, seed 0", "--part balance",
                                "Selection score (validation MSE of the selected set; under condtsf the last "
                                "10% of the training windows, which the experts also train on) decides; test MSE "
                                "beside it for information.")
                lines += ["| protocol | dataset | method | val grad-norm | val none | test grad-norm | test none |",
                          "|---|---|---|---|---|---|---|"]
                wins = 0
                for p, d, m, pr in rows:
                    g, n = pr["grad-norm"], pr["none"]
                    wins += g["best_val_mse"] <= n["best_val_mse"]
                    lines.append(f"| {p} | {d} | {m.upper()} | {g['best_val_mse']:.4f} | {n['best_val_mse']:.4f} "
                                 f"| {g['test_mse']:.4f} | {n['test_mse']:.4f} |")
                lines += ["", f"grad-norm wins on validation in {wins} of {len(rows)} cells."]
                (RESULTS / "ddtime_term_balance.md").write_text("\n".join(lines) + "\n")


# the labels' lag behind the teacher (issue: trajectory matching scales the inputs up) ----------
LABELS = {"MTT": ["--method", "mtt"], "MTT + DDTime": ["--method", "mtt", "--ddtime"],
          "MTT, learnable labels": ["--method", "mtt", "--method-option", "learn_labels=True"],
          "MTT + DDTime, learnable labels": ["--method", "mtt", "--ddtime", "--method-option", "learn_labels=True"],
          "DATM": ["--method", "datm"], "DATM + DDTime": ["--method", "datm", "--ddtime"],
          "DATM, learnable labels": ["--method", "datm", "--method-option", "learn_labels=True"],
          "DATM + DDTime, learnable labels": ["--method", "datm", "--ddtime", "--method-option", "learn_labels=True"]}


def labels(threads: int) -> None:
    """Input scale, label lag (L_val at the first and last update) and test MSE, with and without
    letting the base gradient reach the labels (ETTh1, CondTSF's protocol, 3 seeds)."""
    from ddtime.driver.distill.checkpoint import load_synthetic

    grid = Grid("condtsf", threads)
    lines = _header("Labels behind the teacher: input scale, L_val, learnable labels (ETTh1, CondTSF's protocol)",
                    "--part labels",
                    "x std / y std: the selected set's inputs and labels (the real stretch starts at about 1); "
                    "L_val: DDTime's value loss (labels vs the teacher's forecast of the inputs) at the first and "
                    "last update, mean over seeds; learnable labels = `--method-option learn_labels=True` (the "
                    "base gradient reaches the labels too; a departure from CondTSF's code).")
    lines += ["| variant | test MSE | x std | y std | L_val first | L_val last |", "|---|---|---|---|---|---|"]
    for label, options in LABELS.items():
        runs = [grid.run("ETTh1", options, seed) for seed in range(3)]
        xs, ys, first, last = [], [], [], []
        for r in runs:
            windows, _ = load_synthetic(pathlib.Path(r["out_dir"]) / "synthetic.safetensors")
            xs.append(float(windows[..., :24].std()))
            ys.append(float(windows[..., 24:].std()))
            values = [h["value"] for h in json.loads((pathlib.Path(r["out_dir"]) / "history.json").read_text())
                      if "value" in h]
            if values:
                first.append(values[0])
                last.append(values[-1])
        lag = f"{statistics.fmean(first):.2f} | {statistics.fmean(last):.2f}" if first else "- | -"
        lines.append(f"| {label} | {_fmt([r['test_mse'] for r in runs])} | {statistics.fmean(xs):.2f} | "
                     f"{statistics.fmean(ys):.2f} | {lag} |")
        (RESULTS / "ddtime_labels.md").write_text("\n".join(lines) + "\n")


# diversity and cross-architecture -------------------------------------------------------------
def diversity(threads: int) -> None:
    import ddtime
    from ddtime.driver.distill.checkpoint import load_synthetic

    grid = Grid("condtsf", threads)
    lines = _header("Diversity of the synthetic sets: mean pairwise symmetric KL (ETTh1, CondTSF's protocol)",
                    "--part diversity", "`ddtime.pairwise_symmetric_kl` (tau 1) over the selected set's windows "
                    "[S, 1, 48], mean over pairs i != j; higher = more diverse. Mean over seeds 0-2.")
    lines += ["| method | base | +CondTSF | +DDTime | +both |", "|---|---|---|---|---|"]
    for method in METHODS:
        cells = []
        for variant, extra in VARIANTS.items():
            scores = []
            for seed in range(3):
                r = grid.run("ETTh1", ["--method", method, *extra], seed)
                windows, _ = load_synthetic(pathlib.Path(r["out_dir"]) / "synthetic.safetensors")
                d = ddtime.pairwise_symmetric_kl(windows.double())
                s = d.shape[0]
                scores.append(float(d.sum() / (s * (s - 1))))
            cells.append(f"{statistics.fmean(scores):.4f}")
        lines.append(f"| {method.upper()} | " + " | ".join(cells) + " |")
        (RESULTS / "ddtime_diversity.md").write_text("\n".join(lines) + "\n")


CROSS_MODELS = ("linear", "nlinear", "dlinear", "mlp", "cnn", "lstm", "patchtst", "itransformer")


def cross(threads: int) -> None:
    from ddtime.driver.commands import main as ddtime_main

    torch.set_num_threads(threads)
    grid = Grid("condtsf", threads)
    results = {}
    for variant in ("base", "+CondTSF", "+DDTime"):
        r = grid.run("ETTh1", ["--method", "mtt", *VARIANTS[variant]])
        out = pathlib.Path(r["out_dir"]) / "cross_architecture.json"
        if not out.exists():
            argv = ["evaluate", "--synthetic", str(pathlib.Path(r["out_dir"]) / "synthetic.safetensors"),
                    "--models", ",".join(CROSS_MODELS), "--out", str(out), "--quiet"]
            if variant != "base":
                argv.append("--no-baselines")
            if ddtime_main(argv) != 0:
                raise SystemExit(f"cross-architecture evaluation of {variant} failed")
        results[variant] = json.loads(out.read_text())["results"]
        lines = _header("Cross-architecture: DLinear-distilled ETTh1 sets (MTT, CondTSF's protocol, seed 0) "
                        "trained on other students", "--part cross",
                        "Test MSE, mean ± std over 5 students per architecture, each trained with the "
                        "protocol's recipe (SGD lr 1e-4, momentum 0.9, 250 epochs). Random subset: as many random "
                        "training windows; full data: the architecture trained on all training windows.")
        variants = list(results)
        lines += ["| student | " + " | ".join(variants) + " | random subset | full data |",
                  "|---|" + "---|" * (len(variants) + 2)]
        for model in CROSS_MODELS:
            stats = [results[v][model]["synthetic"] for v in variants]
            cells = [f"{x['test_mse']:.4f} ± {x['test_mse_std']:.4f}" for x in stats]
            ref = results["base"][model]
            lines.append(f"| {model} | " + " | ".join(cells) +
                         f" | {ref['random_subset']['test_mse']:.4f} | {ref['full_data']['test_mse']:.4f} |")
        (RESULTS / "ddtime_cross_architecture.md").write_text("\n".join(lines) + "\n")


PARTS = ("main", "standard", "labels", "ablation", "sensitivity", "balance", "diversity", "cross")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", required=True, choices=(*PARTS, "all"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="seeds on ETTh1 in the main and standard tables")
    parser.add_argument("--methods", default=",".join(METHODS), help="base methods of the main and standard tables")
    parser.add_argument("--datasets", default=None, help="datasets of the main or standard table (default: all)")
    parser.add_argument("--fresh", action="store_true", help="recompute every cell and the experts")
    parser.add_argument("--table", default=None,
                        help="file name in bench/results for the main or standard table (default ddtime_condtsf.md / "
                             "ddtime_standard.md)")
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    command = " ".join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    Grid.fresh = args.fresh
    parts = PARTS if args.part == "all" else (args.part,)
    for part in parts:
        if part == "main":
            datasets = tuple(args.datasets.split(",")) if args.datasets else CONDTSF_DATASETS
            path = RESULTS / (args.table or "ddtime_condtsf.md")
            grid_table(Grid("condtsf", args.threads), datasets, args.seeds, path,
                       "DDTime on CondTSF's protocol (24 -> 24, DLinear)", command, methods=methods)
        elif part == "standard":
            datasets = tuple(args.datasets.split(",")) if args.datasets else STANDARD_DATASETS
            path = RESULTS / (args.table or "ddtime_standard.md")
            grid_table(Grid("standard", args.threads), datasets, args.seeds, path,
                       "DDTime on the standard protocol (96 -> 96, DLinear, 40 experts x 80 epochs, 300 iterations)",
                       command, anchors=HDT_ANCHORS, methods=methods)
        else:
            globals()[part](args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
