"""Reproduction grid: base methods alone / +CondTSF / +DDTime / +both, on the shared datasets.

    python bench/reproduce.py --reduced                                   # whole grid, reduced settings
    python bench/reproduce.py --reduced --datasets ETTh1 --protocols standard --methods datm \\
        --variants base,condtsf,ddtime                                     # one cell group (~minutes)

For every dataset x protocol it runs ``ddtime compare`` (:func:`ddtime.compare.run_grid`):
each method x variant is distilled with the same seed and experts, evaluated by fresh
DLinear students (mean/std over students), next to the full-data model and a random real
subset of the same size. Lengths: 96 -> 96 under ``standard`` (national_illness: 36 -> 24, as in
TSLib), 24 -> 24 under ``condtsf``; ``--seq-len``/``--pred-len`` override them for every dataset.
Tables go to ``--out`` (default ``bench/results``): ``reproduce.csv`` / ``reproduce.md`` with
the relative gain ``(MSE_base - MSE_with) / MSE_base`` per cell and on average (per variant,
and per method x variant); work files (experts, runs) to ``--work`` (default
``runs/reproduce``). ``--resume`` reuses finished cells. Datasets come from the shared data
folder (``DDTIME_SHARED_DATA`` or ``../shared/data``).

``--reduced`` (stated in the table header): 60 iterations, 8 experts x 20 epochs, 3 students,
validation selection every 20 iterations; everything else at the SPEC defaults (S = 10,
K = 20, student lr 3e-4, synthetic lr 0.1, alpha 0.8, lambda_IS 0.6, tau 1). Any common
``ddtime compare`` option can be given after the script's own options and overrides both.

Cost (2 shared CPU cores, ``--threads 1``): one ETTh1 standard cell takes about 2-3 minutes
(distillation, validation selection, 3 students); experts and the references are computed once
per dataset. Measured: ETTh1 standard, DATM x 4 variants, 4 experts x 80 epochs: 609 s in all;
ETTh1 condtsf, the same: 348 s. A reduced grid such as ``--datasets ETTh1,exchange_rate
--protocols standard --methods datm,dm --variants base,ddtime`` (8 cells) runs in well under an
hour; the whole grid (5 datasets x 2 protocols x 5 methods x 4 variants) takes hours.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ddtime.compare import VARIANT_LABELS, VARIANTS, configure_parser, run_grid, write_tables  # noqa: E402
from ddtime.distill.command import load_data, resolve  # noqa: E402
from ddtime.distill.methods import METHODS  # noqa: E402

DATASETS = ("ETTh1", "ETTh2", "ETTm1", "exchange_rate", "national_illness")
PROTOCOLS = ("standard", "condtsf")
DEFAULT_METHODS = tuple(m for m in ("mtt", "datm", "ftd", "dm", "tgdd") if m in METHODS)
REDUCED = {"iterations": 60, "num_experts": 8, "expert_epochs": 20, "students": 3, "select_every": 20}
# Lengths other than the protocol default (96 -> 96 standard, 24 -> 24 condtsf), as in TSLib: national_illness
# (966 weekly rows) is too short for 96 -> 96 windows in its 7:1:2 validation/test splits.
DATASET_LENGTHS = {("national_illness", "standard"): (36, 24)}


def _csv(text: str, allowed, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"reproduce.py: error: {option}: expected a comma-separated subset of {list(allowed)}, "
                         f"got {text!r}")
    return items


def summary_markdown(rows, *, header: str) -> str:
    """Per method x variant and per variant average gains over every dataset/protocol."""
    lines = [header, "", "Average relative gain over the base method (MSE), per method:", "",
             "| method | variant | cells | mean gain | min | max |", "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        for variant in VARIANTS:
            gains = [r["gain_mse"] for r in rows if r["method"] == method and r["variant"] == variant
                     and variant != "base" and r["gain_mse"] is not None]
            if gains:
                lines.append(f"| {method} | {VARIANT_LABELS[variant]} | {len(gains)} | "
                             f"{100 * statistics.fmean(gains):+.2f}% | {100 * min(gains):+.1f}% | "
                             f"{100 * max(gains):+.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    own = argparse.ArgumentParser(description="Reproduction grid (see the module docstring).", add_help=True)
    own.add_argument("--datasets", default=",".join(DATASETS))
    own.add_argument("--protocols", default=",".join(PROTOCOLS))
    own.add_argument("--reduced", action="store_true", help=f"reduced settings {REDUCED}")
    own.add_argument("--out", default=str(REPO / "bench" / "results"), help="tables directory")
    own.add_argument("--work", default=str(REPO / "runs" / "reproduce"), help="experts and per-cell runs")
    own.add_argument("--stem", default="reproduce", help="table file name stem")
    args, rest = own.parse_known_args(argv)
    datasets = _csv(args.datasets, DATASETS, "--datasets")
    protocols = _csv(args.protocols, PROTOCOLS, "--protocols")

    compare_parser = argparse.ArgumentParser(prog="reproduce.py [grid options]")
    configure_parser(compare_parser)
    compare_parser.set_defaults(methods=",".join(DEFAULT_METHODS))
    work = pathlib.Path(args.work)
    rows = []
    t0 = time.perf_counter()
    settings_note = None
    for protocol in protocols:
        for name in datasets:
            cell_args = compare_parser.parse_args(["--data", name, "--protocol", protocol, *rest])
            for key, value in zip(("seq_len", "pred_len"), DATASET_LENGTHS.get((name, protocol), (None, None))):
                if getattr(cell_args, key) is None:
                    setattr(cell_args, key, value)
            if args.reduced:
                for key, value in REDUCED.items():
                    if getattr(cell_args, key) is None:
                        setattr(cell_args, key, value)
            methods = _csv(cell_args.methods, list(METHODS), "--methods")
            variants = sorted(_csv(cell_args.variants, list(VARIANTS), "--variants"), key=list(VARIANTS).index)
            resolve(cell_args)
            data = load_data(cell_args)
            print(f"== {name} {protocol} {data.seq_len}->{data.pred_len}: {methods} x {variants}", flush=True)
            out_dir = work / f"{name}-{protocol}"
            if cell_args.experts is None:
                cell_args.experts = str(work / "experts")
            cell_rows = run_grid(data, methods=methods, variants=variants, args=cell_args, out_dir=out_dir,
                                 quiet=cell_args.quiet)
            rows += cell_rows
            settings_note = (f"{'Reduced' if args.reduced else 'Full'} settings: {cell_args.samples} synthetic "
                             f"windows, {cell_args.iterations} iterations, {cell_args.num_experts} experts x "
                             f"{cell_args.expert_epochs} epochs ({cell_args.model}), {cell_args.students} students "
                             f"per cell (mean ± std), validation selection every {cell_args.select_every} "
                             f"iterations, seed {cell_args.seed}, DDTime terms with the {cell_args.loss_impl} ops.")
            write_tables(cell_rows, out_dir, title=f"{name} ({protocol})", note=settings_note)
            write_tables(rows, args.out, stem=args.stem, title="ddtime reproduction grid",
                         note=settings_note + f" Wall time so far {time.perf_counter() - t0:.0f} s.")
    header = f"# ddtime reproduction summary\n\n{settings_note} Total wall time {time.perf_counter() - t0:.0f} s."
    (pathlib.Path(args.out) / f"{args.stem}_summary.md").write_text(summary_markdown(rows, header=header))
    print((pathlib.Path(args.out) / f"{args.stem}.md").read_text())
    print(summary_markdown(rows, header=header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
