"""``ddtime compare``: the grid methods x {base, +condtsf, +ddtime, +both} on one dataset.

Every cell is one ``ddtime distill`` run (``OUT/<method>-<variant>/``) with the same seed,
experts (shared, in ``OUT/experts`` unless ``--experts``), student recipe and references
(full-data model and a random real subset of the same size, computed once per architecture).
Tables: ``OUT/compare.csv`` and ``OUT/compare.md`` with, per cell, the test MSE/MAE (mean and
std over the students) and the relative gain over the method's base run,
``(MSE_base - MSE_with) / MSE_base``, and its average per variant. ``--resume`` reuses finished
cells (their ``results.json``) and resumes an interrupted one from its checkpoint.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import pathlib
import statistics
import time
from typing import Any, Sequence

__all__ = ["VARIANTS", "run_grid", "relative_gain", "write_tables", "configure_parser", "run"]

VARIANTS = {"base": (False, False), "condtsf": (True, False), "ddtime": (False, True), "both": (True, True)}
VARIANT_LABELS = {"base": "base", "condtsf": "+CondTSF", "ddtime": "+DDTime", "both": "+CondTSF+DDTime"}
COLUMNS = ["dataset", "protocol", "seq_len", "pred_len", "method", "variant", "test_mse", "test_mse_std", "test_mae",
           "test_mae_std", "gain_mse", "random_subset_test_mse", "full_data_test_mse", "best_iteration", "seconds"]


def relative_gain(base_mse: float, with_mse: float) -> float:
    """``(MSE_base - MSE_with) / MSE_base`` (positive = the addition helps)."""
    if not base_mse > 0:
        raise ValueError(f"base_mse: expected a positive MSE, got {base_mse!r}")
    return (base_mse - with_mse) / base_mse


def _parse_list(text: str, allowed: Sequence[str], option: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"{option}: expected a comma-separated subset of {sorted(allowed)}, got {text!r}")
    return items


def options_for(method: str, options: dict[str, Any], all_methods: Sequence[str]) -> dict[str, Any]:
    """The ``--method-option`` entries that ``method`` accepts; an option no method of the grid
    accepts raises ``ValueError`` naming it."""
    from ddtime.distill.methods import build_method

    def accepts(name: str, key: str) -> bool:
        try:
            build_method(name, **{key: options[key]})
        except TypeError:
            return False
        except ValueError as exc:
            raise ValueError(f"--method-option: {exc}") from None
        return True

    for key in options:
        if not any(accepts(m, key) for m in all_methods):
            raise ValueError(f"--method-option: no method of {list(all_methods)} accepts {key!r}")
    return {k: v for k, v in options.items() if accepts(method, k)}


def run_grid(data, *, methods: Sequence[str], variants: Sequence[str], args: argparse.Namespace, out_dir,
             quiet: bool = True) -> list[dict[str, Any]]:
    """Run every (method, variant) cell; ``args`` holds the resolved common options. Returns table rows."""
    from ddtime.distill.command import build_config, check_method_options, ensure_experts, expert_seed, run_distillation
    from ddtime.distill.methods import build_method
    from ddtime.evaluate import student_recipe

    out_dir = pathlib.Path(out_dir)
    recipe = student_recipe(data.protocol, epochs=args.eval_epochs, lr=args.eval_lr)
    cache: dict = {}
    stores: dict[str, Any] = {}
    rows = []
    all_options = dict(args.method_option)
    for method_name in methods:
        options = options_for(method_name, all_options, methods)
        check_method_options(method_name, options)
        method = build_method(method_name, **options)
        base_mse = None
        for variant in variants:
            condtsf, ddtime_on = VARIANTS[variant]
            cell = out_dir / f"{method_name}-{variant}"
            config = build_config(args, method=method_name, condtsf=condtsf, ddtime=ddtime_on, options=options)
            results_path = cell / "results.json"
            results = None
            if args.resume and results_path.exists():
                saved = json.loads(results_path.read_text())
                if {k: v for k, v in saved["settings"].items() if k in config.to_dict() and k not in ("quiet",)} == \
                        {k: v for k, v in config.to_dict().items() if k != "quiet"}:
                    results = saved
            if results is None:
                experts, t0 = None, time.perf_counter()
                if method.requires_experts or condtsf or ddtime_on:
                    key = method.expert_optimizer
                    if key not in stores:
                        stores[key] = ensure_experts(data, directory=args.experts or out_dir / "experts",
                                                     model=args.model, num_experts=args.num_experts,
                                                     expert_epochs=args.expert_epochs, optimizer=key,
                                                     seed=expert_seed(args), device=args.device, quiet=quiet)
                    experts = stores[key]
                results = run_distillation(data, config, experts=experts, out_dir=cell, resume=args.resume,
                                           students=args.students, eval_models=args.eval_models, recipe=recipe,
                                           baseline_cache=cache, data_arg=args.data or "",
                                           full_epochs=args.full_epochs, expert_seconds=time.perf_counter() - t0)
            if variant == "base":
                base_mse = results["test_mse"]
            rows.append({
                "dataset": data.name, "protocol": data.protocol, "seq_len": data.seq_len, "pred_len": data.pred_len,
                "method": method_name, "variant": variant, "test_mse": results["test_mse"],
                "test_mse_std": results["test_mse_std"], "test_mae": results["test_mae"],
                "test_mae_std": results["test_mae_std"],
                "gain_mse": relative_gain(base_mse, results["test_mse"]) if base_mse is not None else None,
                "random_subset_test_mse": results["random_subset_test_mse"],
                "full_data_test_mse": results["full_data_test_mse"], "best_iteration": results["best_iteration"],
                "seconds": results["seconds"],
            })
            if not quiet:
                print(f"  {data.name} {method_name} {VARIANT_LABELS[variant]}: MSE {results['test_mse']:.4f}")
    return rows


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _gain(row: dict[str, Any]) -> str:
    if row["gain_mse"] is None or row["variant"] == "base":
        return "-"
    return f"{100 * row['gain_mse']:+.1f}%"


def markdown_table(rows: Sequence[dict[str, Any]], *, title: str, note: str = "") -> str:
    """Markdown of the rows: one line per cell, then the average gain per variant."""
    out = [f"# {title}", ""]
    if note:
        out += [note, ""]
    out += ["| dataset | protocol | horizon | method | variant | test MSE | test MAE | gain vs base (MSE) "
            "| random subset MSE | full data MSE |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['protocol']} | {r['seq_len']}->{r['pred_len']} | {r['method']} "
                   f"| {VARIANT_LABELS[r['variant']]} | {_fmt(r['test_mse'])} ± {_fmt(r['test_mse_std'])} "
                   f"| {_fmt(r['test_mae'])} ± {_fmt(r['test_mae_std'])} "
                   f"| {_gain(r)} "
                   f"| {_fmt(r['random_subset_test_mse'])} | {_fmt(r['full_data_test_mse'])} |")
    averages = average_gains(rows)
    if averages:
        out += ["", "Average relative gain over the base method (MSE):", "",
                "| variant | cells | mean gain |", "|---|---|---|"]
        for variant, (count, mean) in averages.items():
            out.append(f"| {VARIANT_LABELS[variant]} | {count} | {100 * mean:+.2f}% |")
    return "\n".join(out) + "\n"


def average_gains(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{variant: (number of cells, mean relative gain)}`` over the non-base variants."""
    result = {}
    for variant in VARIANTS:
        if variant == "base":
            continue
        gains = [r["gain_mse"] for r in rows if r["variant"] == variant and r["gain_mse"] is not None]
        if gains:
            result[variant] = (len(gains), statistics.fmean(gains))
    return result


def write_tables(rows: Sequence[dict[str, Any]], out_dir, *, stem: str = "compare", title: str = "ddtime compare",
                 note: str = "") -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``stem.csv`` and ``stem.md`` into ``out_dir``; returns their paths."""
    from ddtime._atomic import atomic_write_bytes

    out_dir = pathlib.Path(out_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    atomic_write_bytes(csv_path, buffer.getvalue().encode())
    atomic_write_bytes(md_path, markdown_table(rows, title=title, note=note).encode())
    return csv_path, md_path


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime compare`` (the common distill options plus the grid)."""
    from ddtime.distill.command import add_common_options
    from ddtime.distill.methods import METHODS

    parser.description = "Compare base methods alone and with CondTSF / DDTime on one dataset."
    add_common_options(parser)
    parser.add_argument("--methods", default="mtt,datm,ftd,dm",
                        help=f"comma-separated base methods from {sorted(METHODS)}")
    parser.add_argument("--variants", default="base,condtsf,ddtime,both",
                        help="comma-separated subset of base,condtsf,ddtime,both (base is needed for the gains)")
    parser.add_argument("--out", default="runs/compare", help="output directory")
    parser.add_argument("--resume", action="store_true", help="reuse finished cells, resume interrupted ones")
    return parser


def run(args: argparse.Namespace) -> int:
    """``ddtime compare``."""
    from ddtime.distill.command import load_data, resolve
    from ddtime.distill.methods import METHODS

    methods = _parse_list(args.methods, list(METHODS), "--methods")
    variants = _parse_list(args.variants, list(VARIANTS), "--variants")
    variants = sorted(variants, key=list(VARIANTS).index)
    chosen = resolve(args)
    if chosen:
        print("ddtime compare: " + ("quick defaults (built-in generated dataset): " if args.data is None else "defaults: ")
              + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    data = load_data(args)
    rows = run_grid(data, methods=methods, variants=variants, args=args, out_dir=args.out, quiet=args.quiet)
    note = (f"Settings: {args.samples} synthetic windows, {args.iterations} iterations, {args.num_experts} experts x "
            f"{args.expert_epochs} epochs, {args.students} students, model {args.model}, seed {args.seed}.")
    csv_path, md_path = write_tables(rows, args.out, title=f"{data.name} ({data.protocol}, "
                                     f"{data.seq_len}->{data.pred_len})", note=note)
    print(md_path.read_text())
    print(f"tables: {csv_path}, {md_path}")
    return 0
