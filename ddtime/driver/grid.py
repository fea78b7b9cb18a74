"""The comparison grid: base methods x {base, +condtsf, +ddtime, +both} on one dataset, and its tables.

Every cell is one :func:`~ddtime.driver.pipeline.run_distillation` (``OUT/<method>-<variant>/``)
with the same seed, experts (shared: one store per expert optimiser), student recipe and
references (full-data model and a random real subset of the same size, computed once per
architecture). Tables: ``OUT/compare.csv`` and ``OUT/compare.md`` with, per cell, the test MSE/MAE
(mean and std over the students), the relative gain over the method's base run,
``(MSE_base - MSE_with) / MSE_base``, and over the better of the base run and the random real subset,
``(MSE_best - MSE_with) / MSE_best`` with ``MSE_best = min(MSE_base, MSE_random)``, and their averages
per variant. ``resume`` reuses finished
cells (their ``results.json``) and resumes an interrupted one from its checkpoint; a cell computed
from other data, experts or evaluation (its fingerprint) is refused with one line naming what differs.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import statistics
import time
from typing import Any, Sequence

from tqdm.auto import tqdm

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.distill import CondTSFUpdate, DDTimeTerms, DistillConfig, build_method
from ddtime.driver.fingerprint import check_fingerprint
from ddtime.driver.pipeline import (EvaluationConfig, ExpertRequest, experts_for, run_distillation, run_identity,
                                    teacher_experts_for)

__all__ = ["VARIANTS", "VARIANT_LABELS", "run_grid", "relative_gain", "accepted_options", "variant_config",
           "markdown_table", "average_gains", "write_tables"]

VARIANTS = {"base": (False, False), "condtsf": (True, False), "ddtime": (False, True), "both": (True, True)}
VARIANT_LABELS = {"base": "base", "condtsf": "+CondTSF", "ddtime": "+DDTime", "both": "+CondTSF+DDTime"}
COLUMNS = ["dataset", "protocol", "seq_len", "pred_len", "method", "variant", "test_mse", "test_mse_std", "test_mae",
           "test_mae_std", "gain_mse", "gain_vs_best_mse", "random_subset_test_mse", "full_data_test_mse",
           "best_iteration", "seconds"]


def relative_gain(base_mse: float, with_mse: float) -> float:
    """``(MSE_base - MSE_with) / MSE_base`` (positive = the addition helps)."""
    if not base_mse > 0:
        raise ValueError(f"base_mse: expected a positive MSE, got {base_mse!r}")
    return (base_mse - with_mse) / base_mse


def accepted_options(method: str, options: dict[str, Any], all_methods: Sequence[str]) -> dict[str, Any]:
    """The entries of ``options`` that ``method`` accepts; an option that no method of
    ``all_methods`` accepts, or a bad value, raises ``ValueError`` naming it."""
    def accepts(name: str, key: str) -> bool:
        try:
            build_method(name, **{key: options[key]})
        except TypeError:
            return False
        except ValueError as exc:
            raise ValueError(f"method_options: {exc}") from None
        return True

    for key in options:
        if not any(accepts(m, key) for m in all_methods):
            raise ValueError(f"method_options: no method of {list(all_methods)} accepts {key!r}")
    return {k: v for k, v in options.items() if accepts(method, k)}


def variant_config(base: DistillConfig, variant: str, *, method: str, method_options: dict[str, Any],
                   condtsf: CondTSFUpdate = CondTSFUpdate(),
                   ddtime_terms: DDTimeTerms = DDTimeTerms()) -> DistillConfig:
    """``base`` for one cell: ``method`` with its options, and the variant's CondTSF update / DDTime terms."""
    with_condtsf, with_ddtime = VARIANTS[variant]
    return dataclasses.replace(base, method=method, method_options=method_options,
                               condtsf=condtsf if with_condtsf else None,
                               ddtime_terms=ddtime_terms if with_ddtime else None)


def run_grid(data, base: DistillConfig, *, methods: Sequence[str], variants: Sequence[str], out_dir,
             experts: ExpertRequest, evaluation: EvaluationConfig = EvaluationConfig(),
             method_options: dict[str, Any] | None = None, method_defaults: dict[str, dict] | None = None,
             condtsf: CondTSFUpdate = CondTSFUpdate(), ddtime_terms: DDTimeTerms = DDTimeTerms(), resume: bool = False,
             data_arg: str = "", quiet: bool = True) -> list[dict[str, Any]]:
    """Run every (method, variant) cell of ``base``; returns the table rows.

    method_options: options for the methods, each going to the methods that accept it;
    method_defaults: ``{method: options}`` below them (a preset's); condtsf / ddtime_terms: the
    settings of the variants that switch them on.
    """
    out_dir = pathlib.Path(out_dir)
    cache: dict = {}
    stores: dict[str, Any] = {}
    rows = []
    bar = tqdm(total=len(methods) * len(variants), desc="compare (cells)", disable=quiet)
    for method_name in methods:
        options = accepted_options(method_name, dict(method_options or {}), methods)
        base_mse = best_mse = None
        for variant in variants:
            config = variant_config(base, variant, method=method_name, condtsf=condtsf, ddtime_terms=ddtime_terms,
                                    method_options={**(method_defaults or {}).get(method_name, {}), **options})
            method = config.build_method()
            cell = out_dir / f"{method_name}-{variant}"
            results_path = cell / "results.json"
            results = None
            t0 = time.perf_counter()
            store = teachers = None
            if method.requires_experts or config.needs_teacher:
                if method.expert_optimizer not in stores:
                    stores[method.expert_optimizer] = experts_for(data, config, method, experts, quiet=quiet)
                store = stores[method.expert_optimizer]
                wanted = config.condtsf.teacher_optimizer if config.condtsf is not None else None
                if wanted is not None and wanted not in stores:
                    stores[wanted] = teacher_experts_for(data, config, method, experts, quiet=quiet)
                teachers = stores.get(wanted) if wanted is not None else None
            if resume and results_path.exists():
                saved = json.loads(results_path.read_text())
                check_fingerprint(saved.get("fingerprint"), run_identity(data, store, evaluation), str(results_path))
                wanted = {k: v for k, v in config.to_dict().items() if k != "quiet"}
                if {k: v for k, v in saved["settings"].items() if k in wanted} == wanted:
                    results = saved
            if results is None:
                results = run_distillation(data, config, experts=store, out_dir=cell, evaluation=evaluation,
                                           resume=resume, reference_cache=cache, data_arg=data_arg,
                                           expert_seconds=time.perf_counter() - t0, teacher_experts=teachers)
            if variant == "base":
                base_mse = results["test_mse"]
                best_mse = min(base_mse, results["random_subset_test_mse"])
            rows.append({
                "dataset": data.name, "protocol": data.protocol, "seq_len": data.seq_len, "pred_len": data.pred_len,
                "method": method_name, "variant": variant, "test_mse": results["test_mse"],
                "test_mse_std": results["test_mse_std"], "test_mae": results["test_mae"],
                "test_mae_std": results["test_mae_std"],
                "gain_mse": relative_gain(base_mse, results["test_mse"]) if base_mse is not None else None,
                "gain_vs_best_mse": relative_gain(best_mse, results["test_mse"]) if best_mse is not None else None,
                "random_subset_test_mse": results["random_subset_test_mse"],
                "full_data_test_mse": results["full_data_test_mse"], "best_iteration": results["best_iteration"],
                "seconds": results["seconds"],
            })
            bar.update()
            if not quiet:
                bar.write(f"  {data.name} {method_name} {VARIANT_LABELS[variant]}: MSE {results['test_mse']:.4f}")
    bar.close()
    return rows


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _gain(row: dict[str, Any], key: str = "gain_mse") -> str:
    if row.get(key) is None or (row["variant"] == "base" and key == "gain_mse"):
        return "-"
    return f"{100 * row[key]:+.1f}%"


def markdown_table(rows: Sequence[dict[str, Any]], *, title: str, note: str = "") -> str:
    """Markdown of the rows: one line per cell, then the average gain per variant."""
    out = [f"# {title}", ""]
    if note:
        out += [note, ""]
    out += ["| dataset | protocol | horizon | method | variant | test MSE | test MAE | gain vs base (MSE) "
            "| gain vs best of base, random subset (MSE) | random subset MSE | full data MSE |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['protocol']} | {r['seq_len']}->{r['pred_len']} | {r['method']} "
                   f"| {VARIANT_LABELS[r['variant']]} | {_fmt(r['test_mse'])} ± {_fmt(r['test_mse_std'])} "
                   f"| {_fmt(r['test_mae'])} ± {_fmt(r['test_mae_std'])} "
                   f"| {_gain(r)} | {_gain(r, 'gain_vs_best_mse')} "
                   f"| {_fmt(r['random_subset_test_mse'])} | {_fmt(r['full_data_test_mse'])} |")
    averages = average_gains(rows)
    if averages:
        out += ["", "Average relative gain (MSE):", "",
                "| variant | cells | mean gain vs base | mean gain vs best of base, random subset |",
                "|---|---|---|---|"]
        for variant, (count, mean, mean_best) in averages.items():
            out.append(f"| {VARIANT_LABELS[variant]} | {count} | {100 * mean:+.2f}% | {100 * mean_best:+.2f}% |")
    return "\n".join(out) + "\n"


def average_gains(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, float, float]]:
    """``{variant: (number of cells, mean gain over base, mean gain over the better of base and random
    subset)}`` over the non-base variants."""
    result = {}
    for variant in VARIANTS:
        if variant == "base":
            continue
        cells = [r for r in rows if r["variant"] == variant and r["gain_mse"] is not None]
        if cells:
            result[variant] = (len(cells), statistics.fmean(r["gain_mse"] for r in cells),
                               statistics.fmean(r["gain_vs_best_mse"] for r in cells))
    return result


def write_tables(rows: Sequence[dict[str, Any]], out_dir, *, stem: str = "compare", title: str = "ddtime compare",
                 note: str = "") -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``stem.csv`` and ``stem.md`` into ``out_dir``; returns their paths."""
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
