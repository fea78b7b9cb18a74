"""``ddtime compare``: the grid methods x {base, +condtsf, +ddtime, +both} on one dataset
(:mod:`ddtime.driver.grid`; ``OUT/<method>-<variant>/`` per cell, ``OUT/compare.{csv,md}``)."""
from __future__ import annotations

import argparse
from typing import Sequence

from ddtime.driver.commands.options import (add_common_options, condtsf_update, ddtime_terms, distill_config,
                                            evaluation_config, expert_request, load_data, resolve)
from ddtime.driver.distill import METHODS
from ddtime.driver.grid import VARIANTS, accepted_options, run_grid, write_tables

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ddtime compare`` (the common distill options plus the grid)."""
    parser.description = "Compare base methods alone and with CondTSF / DDTime on one dataset."
    add_common_options(parser)
    parser.add_argument("--methods", default="mtt,datm,ftd,dm",
                        help=f"comma-separated base methods from {sorted(METHODS)}")
    parser.add_argument("--variants", default="base,condtsf,ddtime,both",
                        help="comma-separated subset of base,condtsf,ddtime,both (base is needed for the gains)")
    parser.add_argument("--out", default="runs/compare", help="output directory")
    parser.add_argument("--resume", action="store_true", help="reuse finished cells, resume interrupted ones")
    return parser


def _parse_list(text: str, allowed: Sequence[str], option: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"{option}: expected a comma-separated subset of {sorted(allowed)}, got {text!r}")
    return items


def run(args: argparse.Namespace) -> int:
    """``ddtime compare``: run (or resume) the grid, write and print its tables."""
    methods = _parse_list(args.methods, list(METHODS), "--methods")
    variants = sorted(_parse_list(args.variants, list(VARIANTS), "--variants"), key=list(VARIANTS).index)
    chosen = resolve(args)
    if chosen:
        kind = "quick defaults (built-in generated dataset)" if args.data is None else "defaults"
        print(f"ddtime compare: {kind}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    options = dict(args.method_option)
    try:  # every option must fit some method, before any training
        first = accepted_options(methods[0], options, methods)
    except ValueError as exc:
        raise ValueError(f"--method-option: {exc}") from None
    data = load_data(args)
    base = distill_config(args, method=methods[0], condtsf=False, ddtime=False, options=first)
    rows = run_grid(data, base, methods=methods, variants=variants, out_dir=args.out, experts=expert_request(args),
                    evaluation=evaluation_config(args, data.protocol), method_options=options,
                    method_defaults=args.method_defaults, condtsf=condtsf_update(args), ddtime_terms=ddtime_terms(args),
                    resume=args.resume, data_arg=args.data or "", quiet=args.quiet)
    note = (f"Settings: {args.samples} synthetic windows, {args.iterations} iterations, {args.num_experts} experts x "
            f"{args.expert_epochs} epochs, {args.students} students, model {args.model}, seed {args.seed}.")
    csv_path, md_path = write_tables(rows, args.out, title=f"{data.name} ({data.protocol}, "
                                     f"{data.seq_len}->{data.pred_len})", note=note)
    print(md_path.read_text())
    print(f"tables: {csv_path}, {md_path}")
    return 0
