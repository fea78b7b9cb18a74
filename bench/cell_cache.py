"""Cached cells of ``bench/reproduce_*.py``: a cell's directory is reused only when its key matches.

A key is ``{"settings": ..., "source": source_hash()}``: the resolved settings of the command the
cell runs (:func:`distill_settings` for ``ddtime distill``: its DistillConfig, the data's
fingerprint, the experts and the evaluation, after presets and defaults) and the hash of the
package's code (:func:`results_writer.source_hash`). It is written to ``DIR/cell_key.json`` before
the cell runs, so an interrupted cell with the same key resumes; a cell with another key (or any
cell under ``fresh``) is deleted and recomputed. Under ``fresh`` a cell is recomputed once per
process: cells shared by several tables are not recomputed twice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pathlib
import shutil

from results_writer import source_hash

__all__ = ["KEY_FILE", "distill_settings", "cell_key", "prepare"]

KEY_FILE = "cell_key.json"
_recomputed: set[pathlib.Path] = set()  # cells (re)computed by this process under fresh


def distill_settings(argv: list[str]) -> dict:
    """What ``ddtime distill argv`` runs, resolved without running it (JSON-able)."""
    from ddtime.driver.commands import build_parser
    from ddtime.driver.commands.options import distill_config, evaluation_config, expert_request, load_data, resolve
    from ddtime.driver.fingerprint import data_identity

    args = build_parser().parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):  # load_data prints the preset's choices
        resolve(args)
        data = load_data(args)
    config = {k: v for k, v in distill_config(args, method=args.method, condtsf=args.condtsf,
                                              ddtime=args.ddtime).to_dict().items() if k != "quiet"}
    return json.loads(json.dumps({"config": config, "data": data_identity(data),
                                  "experts": dataclasses.asdict(expert_request(args)),
                                  "evaluation": dataclasses.asdict(evaluation_config(args, data.protocol))},
                                 default=str))


def cell_key(settings: dict) -> dict:
    """The key of a cell with these resolved settings at the current code."""
    return {"settings": settings, "source": source_hash()}


def prepare(directory: pathlib.Path, key: dict, *, done: str, fresh: bool = False) -> bool:
    """Make ``directory`` ready for a cell of ``key``; True when its result (the file ``done`` in it)
    can be reused. Otherwise the directory is emptied unless it holds an interrupted cell of the same
    key (then the caller resumes it), and the key is written."""
    directory = pathlib.Path(directory)
    key_path = directory / KEY_FILE
    saved = json.loads(key_path.read_text()) if key_path.is_file() else None
    stale = saved != key or (fresh and directory.resolve() not in _recomputed)
    if not stale and (directory / done).exists():
        return True
    if stale and directory.exists():
        shutil.rmtree(directory)
    if fresh:
        _recomputed.add(directory.resolve())
    directory.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
    return False
