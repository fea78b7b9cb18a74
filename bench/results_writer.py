"""Benchmark bookkeeping shared by bench/*.py: the compared variants, peak tensor memory, machine
description, result files.

Peak memory is measured with torch.profiler (profile_memory=True): every allocation and free that goes
through c10's CPU allocator -- eager ATen ops, Inductor's buffers and the ddtime kernels alike -- is an
event carrying the running total; the peak is the largest running total above the level at the start
of the call. Python objects and allocator-external memory are not counted.

Every result records :func:`source_hash`, the hash of the package's code it was computed with
(cached cells of ``bench/reproduce_*.py`` are keyed by it, :mod:`cell_cache`).
"""
import ast
import datetime
import functools
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("fused", "eager", "compiled")


def loss_variants(fused, reference):
    """``variant -> callable`` for "fused", "eager" (the reference) and "compiled" (torch.compile of
    the reference, fullgraph and static shapes, built once on first use)."""
    compiled = []

    def loss_function(variant):
        if variant == "fused":
            return fused
        if variant == "eager":
            return reference
        if not compiled:
            compiled.append(torch.compile(reference, fullgraph=True, dynamic=False))
        return compiled[0]

    return loss_function


def peak_tensor_bytes(fn) -> int:
    """Largest amount of CPU tensor memory allocated at once while fn() runs (bytes).

    The profiler's running total also counts earlier profiled allocations that are still alive, so
    the peak is taken relative to the level just before the first event of this call.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == torch._C._profiler._EventType.Allocation:
            events.append((event.start_time_ns, event.extra_fields.alloc_size, event.extra_fields.total_allocated))
    if not events:
        return 0
    events.sort()
    _, first_size, first_total = events[0]
    start = first_total - first_size
    return max(0, max(total for _, _, total in events) - start)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _code_of(path: Path) -> bytes:
    """A Python file's AST without docstrings (comments and layout do not count), other files' bytes."""
    if path.suffix != ".py":
        return path.read_bytes()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@functools.lru_cache(maxsize=None)
def source_hash(root: Path = REPO) -> str:
    """sha256 (16 hex digits) of the package's code under ``root``: every ``ddtime/**/*.py`` (its AST
    without docstrings) and every file under ``csrc/``, with their paths."""
    h = hashlib.sha256()
    files = sorted([*(root / "ddtime").rglob("*.py"), *(p for p in (root / "csrc").rglob("*") if p.is_file())])
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(_code_of(path)).digest())
    return h.hexdigest()[:16]


def machine() -> dict:
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "source": source_hash(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "env": {k: os.environ[k] for k in ("THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS") if k in os.environ},
    }


def write_comparison(name: str, records: list[dict], *, baseline: str, others: list[str], title: str, notes: str = "",
                     extra_machine: dict | None = None):
    """Write RESULTS_DIR/name.json (every record + machine) and name.md (one row per case).

    records: dicts with keys case (str), variant (str), min_ms, median_ms, mean_ms, rounds, peak_mb.
    The table shows each variant's median and min time and peak memory, and the speed-up of
    `baseline` over each of `others` computed from the min times (the least noisy statistic on a
    shared machine).
    extra_machine: further machine facts (e.g. BLAS, load average), added to the JSON's machine entry
    and to the table's header line as "key value" (underscores shown as spaces).
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    info = machine()
    extra = dict(extra_machine or {})
    info.update(extra)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": info, "notes": notes, "records": records}, indent=2) + "\n")

    by_case: dict[str, dict[str, dict]] = {}
    for rec in records:
        by_case.setdefault(rec["case"], {})[rec["variant"]] = rec
    variants = [baseline] + others
    head = ["case"] + [f"{v} median / min ms" for v in variants] + [f"{baseline} vs {o}" for o in others]
    head += [f"{v} peak MB" for v in variants]
    lines = [f"# {title}", ""]
    lines += [
        f"{info['date']}, commit {info['commit']}: {info['cpu']}, {info['logical_cpus']} logical CPUs, "
        f"torch {info['torch']} ({info['torch_threads']} threads, {info['cpu_capability']}), "
        f"Python {info['python']}, {info['platform']}"
        + "".join(f", {k.replace('_', ' ')} {v}" for k, v in extra.items())
        + (f", env {info['env']}" if info["env"] else ""),
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, row in by_case.items():
        cells = [case]
        for v in variants:
            rec = row.get(v)
            cells.append(f"{rec['median_ms']:.3f} / {rec['min_ms']:.3f}" if rec else "-")
        for o in others:
            if baseline in row and o in row:
                cells.append(f"{row[o]['min_ms'] / row[baseline]['min_ms']:.2f}x")
            else:
                cells.append("-")
        for v in variants:
            rec = row.get(v)
            cells.append(f"{rec['peak_mb']:.1f}" if rec and rec.get("peak_mb") is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
