"""The on-disk layout of an expert directory and its checks, for forecasting models and classifiers alike.

Layout (written by :class:`ddtime.driver.experts.writer.ExpertWriter`)::

    .lock                     held (flock) by the process training into the directory
    manifest.json             {"format", "settings", "settings_hash", "num_experts", "experts": [...]}
    expert_000.safetensors    "trajectory": float32 [expert_epochs + 1, P] (row 0 = initial parameters),
                              metadata: settings_hash, expert index, seed, the task's metrics
    ...

The settings say which model family the experts are (:func:`task_of`): forecasting settings
(:func:`ddtime.driver.experts.train.forecasting_settings`) have no ``"task"`` key, classifier settings have
``"task": "classification"``. Only the metrics of a manifest entry (:data:`ENTRY_METADATA`) depend on
the task. A settings mismatch, a truncated or corrupt file or a wrong shape raises an error naming the file.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from safetensors import safe_open

__all__ = ["FORMAT_VERSION", "MANIFEST", "TASKS", "ENTRY_METADATA", "expert_file", "settings_hash", "task_of",
           "read_manifest", "read_header", "scan_experts"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXPERT_FILE = re.compile(r"^expert_(\d{3,})\.safetensors$")
TASKS = ("forecasting", "classification")
# task -> (metadata fields every expert file has, a group of fields that are all present or all
# absent), each field with its type; the manifest entry of an expert is index, file and these.
ENTRY_METADATA = {
    "forecasting": ({"seed": int, "test_mse": float, "test_mae": float, "train_loss": float},
                    {"teacher_epoch": int, "teacher_test_mse": float}),
    "classification": ({"seed": int, "test_acc": float}, {}),
}
_MANIFEST_ENTRY_KEYS = {"forecasting": ("test_mse", "test_mae"), "classification": ("test_acc",)}


def expert_file(i: int) -> str:
    return f"expert_{i:03d}.safetensors"


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def task_of(settings: dict) -> str:
    """The model family of a settings dict: its ``"task"``, ``"forecasting"`` where it has none."""
    task = settings.get("task", "forecasting")
    if task not in TASKS:
        raise ValueError(f"settings: task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


# ----------------------------------------------------------------------------------------------
# reading and validating
def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no expert manifest here (train experts into this directory first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: expert manifest is not readable JSON ({exc})") from None
    required = {"format", "settings", "settings_hash", "num_experts", "experts"}
    if not isinstance(manifest, dict) or not required <= set(manifest):
        have = sorted(manifest) if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: expert manifest must hold the keys {sorted(required)}, got {have}")
    if manifest["format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: expert manifest format {manifest['format']!r}, expected {FORMAT_VERSION}")
    if settings_hash(manifest["settings"]) != manifest["settings_hash"]:
        raise ValueError(f"{path}: settings_hash does not match the stored settings (edited or corrupt manifest)")
    try:
        keys = {"index", "file", *_MANIFEST_ENTRY_KEYS[task_of(manifest["settings"])]}
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    for entry in manifest["experts"]:
        if not isinstance(entry, dict) or not keys <= set(entry):
            raise ValueError(f"{path}: malformed expert entry {entry!r}")
    return manifest


def read_header(path: Path, settings: dict, digest: str, index: int) -> dict:
    """Validate an expert file's header (size, shape, dtype, settings) and return its metadata."""
    expected = [settings["expert_epochs"] + 1, settings["num_params"]]
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            if keys != ["trajectory"]:
                raise ValueError(f"{path}: expected one tensor 'trajectory', got {keys}")
            shape = list(f.get_slice("trajectory").get_shape())
            dtype = f.get_slice("trajectory").get_dtype()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: expert file is missing") from None
    except ValueError:
        raise
    except Exception as exc:  # safetensors raises its own error type for truncated / corrupt files
        raise ValueError(f"{path}: truncated or corrupt expert file ({exc})") from None
    if shape != expected or dtype not in ("F32", "float32"):
        raise ValueError(f"{path}: trajectory has shape {shape} / dtype {dtype}, expected {expected} float32 "
                         f"(expert_epochs + 1, num_params)")
    if meta.get("settings_hash") != digest or meta.get("expert") != str(index):
        raise ValueError(f"{path}: file belongs to another run (settings_hash {meta.get('settings_hash')!r}, "
                         f"expert {meta.get('expert')!r}; expected {digest!r}, expert {index})")
    return meta


def entry_from_meta(path: Path, index: int, meta: dict, task: str) -> dict:
    """The manifest entry of an expert file from its metadata (:data:`ENTRY_METADATA` of ``task``)."""
    required, group = ENTRY_METADATA[task]
    fields = dict(required)
    if group and next(iter(group)) in meta:
        fields.update(group)
    entry = {"index": index, "file": expert_file(index)}
    for key, kind in fields.items():
        try:
            entry[key] = kind(meta[key])
        except (KeyError, ValueError):
            raise ValueError(f"{path}: metadata lacks a valid {key!r}") from None
    return entry


def scan_experts(out_dir: Path, settings: dict, digest: str) -> dict[int, dict]:
    """{index: manifest entry} for every expert file in ``out_dir`` (each validated)."""
    task = task_of(settings)
    found = {}
    for path in sorted(out_dir.iterdir()):
        match = EXPERT_FILE.match(path.name)
        if match:
            index = int(match.group(1))
            found[index] = entry_from_meta(path, index, read_header(path, settings, digest, index), task)
    return found
