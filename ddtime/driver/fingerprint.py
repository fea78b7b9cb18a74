"""What a distillation run was computed from, stored in its checkpoint and ``results.json`` so that
``--resume`` refuses to continue a run on other data, other experts or another evaluation recipe.

A fingerprint is a JSON-able dict::

    {"data": {"dataset", "source_sha256", "protocol", "scale", "features", "target", "seq_len",
              "pred_len", "stride", "borders", "channels"},
     "experts": {"settings_hash", "num_experts"} or None,
     "evaluation": {"students", "models", "recipe", "full_epochs", ...} or None}
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["data_identity", "run_fingerprint", "fingerprint_differences", "check_fingerprint"]


def data_identity(data) -> dict[str, Any]:
    """The source file's sha256, protocol, scaling, channels, lengths and split borders of a ForecastData."""
    return {"dataset": data.name, "source_sha256": data.source_sha256, "protocol": data.protocol,
            "scale": data.scale, "features": data.features, "target": data.target, "seq_len": data.seq_len,
            "pred_len": data.pred_len, "stride": data.stride,
            "borders": {split: list(rows) for split, rows in data.borders.items()}, "channels": list(data.channels)}


def run_fingerprint(data, experts=None, evaluation=None) -> dict[str, Any]:
    """Fingerprint of a run on ``data`` with ``experts`` (an ExpertStore or None) and ``evaluation``
    (an EvaluationConfig-like dataclass with its recipe resolved, a dict, or None), as JSON round-trips it."""
    if dataclasses.is_dataclass(evaluation):
        evaluation = dataclasses.asdict(evaluation)
    store = None if experts is None else {"settings_hash": experts.manifest["settings_hash"],
                                          "num_experts": experts.num_experts}
    return json.loads(json.dumps({"data": data_identity(data), "experts": store, "evaluation": evaluation}))


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def fingerprint_differences(saved: dict | None, now: dict) -> list[str]:
    """``"key=saved (now current)"`` for every leaf (dotted path) that differs; a missing saved
    fingerprint differs in every key."""
    if saved is None:
        return ["no fingerprint (written by an older ddtime)"]
    old, new = _flatten(saved, ""), _flatten(now, "")
    missing = object()
    return [f"{key}={old.get(key, '(none)')!r} (now {new.get(key, '(none)')!r})"
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def check_fingerprint(saved: dict | None, now: dict, what: str) -> None:
    """Raise ``ValueError`` (one line naming every difference) unless ``saved`` equals ``now``;
    ``what`` names the file being resumed."""
    differences = fingerprint_differences(saved, now)
    if differences:
        raise ValueError(f"resume: {what} was computed from other data, experts or evaluation: "
                         + "; ".join(differences))
