"""The on-disk expert store: layout, settings, validation, writing (:class:`ExpertWriter`) and read
access (:class:`ExpertStore`), for forecasting models and classifiers alike.

Layout of an expert directory (written by :func:`ddtime.driver.experts.train_experts` for
forecasting, :func:`ddtime.driver.classification.train_trajectories` for classifiers)::

    .lock                     held (flock) by the process training into the directory
    manifest.json             {"format", "settings", "settings_hash", "num_experts", "experts": [...]}
    expert_000.safetensors    "trajectory": float32 [expert_epochs + 1, P] (row 0 = initial parameters),
                              metadata: settings_hash, expert index, seed, the task's metrics
    ...

The settings say which model family the experts are (:func:`task_of`): forecasting settings
(:func:`expert_settings`) have no ``"task"`` key, classifier settings have ``"task":
"classification"``. The format and its checks are the same for both; only the metrics of a
manifest entry (:data:`ENTRY_METADATA`) and the template network (:meth:`ExpertStore.network`)
depend on the task. Every file is written atomically (``*.tmp``, fsync, ``os.replace``), so an
expert file is complete or absent. A settings mismatch (other data, model, optimizer, ...), a
truncated or corrupt file or a wrong shape raises an error naming the file.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import operator
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.models import assign_flat_params, build_model, param_spec

__all__ = ["ExpertStore", "ExpertWriter", "ExpertDirectoryBusy", "exclusive", "FORMAT_VERSION", "MANIFEST",
           "EXPERT_OPTIMIZERS", "TASKS", "DEFAULT_MEMORY_LIMIT", "ENTRY_METADATA", "task_of", "expert_file", "expert_settings",
           "settings_hash", "data_fingerprint", "read_manifest", "write_manifest", "scan_experts"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXPERT_FILE = re.compile(r"^expert_(\d{3,})\.safetensors$")
EXPERT_OPTIMIZERS = ("sgd", "sam", "gsam")
TASKS = ("forecasting", "classification")
# task -> (metadata fields every expert file has, a group of fields that are all present or all
# absent), each field with its type; the manifest entry of an expert is index, file and these.
ENTRY_METADATA = {
    "forecasting": ({"seed": int, "test_mse": float, "test_mae": float, "train_loss": float},
                    {"teacher_epoch": int, "teacher_test_mse": float}),
    "classification": ({"seed": int, "test_acc": float}, {}),
}
#: default bound of the trajectories an ExpertStore keeps in memory (bytes)
DEFAULT_MEMORY_LIMIT = 2 * 2**30
_MANIFEST_ENTRY_KEYS = {"forecasting": ("test_mse", "test_mae"), "classification": ("test_acc",)}


def expert_file(i: int) -> str:
    return f"expert_{i:03d}.safetensors"


def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


# ----------------------------------------------------------------------------------------------
# settings
def data_fingerprint(data) -> str:
    """sha256 (16 hex digits) of the scaled training series and the window lengths."""
    h = hashlib.sha256()
    train = data.train.detach().to("cpu", torch.float32).contiguous()
    h.update(repr((tuple(train.shape), data.protocol, data.seq_len, data.pred_len)).encode())
    h.update(train.numpy().tobytes())
    return h.hexdigest()[:16]


def expert_settings(
    data,
    *,
    model: str,
    model_kwargs: dict | None,
    expert_epochs: int,
    optimizer: str,
    lr: float,
    momentum: float,
    batch_size: int,
    rho: float,
    seed: int,
    gsam_alpha: float | None = None,
) -> dict:
    """Everything that determines an expert's trajectory, as stored in the manifest (``gsam_alpha`` only
    for GSAM experts, so that SGD / SAM stores keep their settings hash)."""
    net = build_model(model, seq_len=data.seq_len, pred_len=data.pred_len, channels=data.window_channels,
                      **(model_kwargs or {}))
    spec = param_spec(net)
    settings = {
        "dataset": data.name,
        "protocol": data.protocol,
        "seq_len": data.seq_len,
        "pred_len": data.pred_len,
        "stride": data.stride,
        "channels": data.window_channels,
        "data_fingerprint": data_fingerprint(data),
        "model": model.lower(),
        "model_kwargs": dict(sorted((model_kwargs or {}).items())),
        "expert_epochs": expert_epochs,
        "optimizer": optimizer,
        "lr": float(lr),
        "momentum": float(momentum),
        "batch_size": batch_size,
        "rho": float(rho) if optimizer in ("sam", "gsam") else None,
        "seed": seed,
        "param_spec": [[name, list(shape)] for name, shape in spec],
        "num_params": sum(math.prod(shape) for _, shape in spec),
    }
    if optimizer == "gsam":
        settings["gsam_alpha"] = float(gsam_alpha)
    return settings


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


def _read_header(path: Path, settings: dict, digest: str, index: int) -> dict:
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


def _entry_from_meta(path: Path, index: int, meta: dict, task: str) -> dict:
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
            found[index] = _entry_from_meta(path, index, _read_header(path, settings, digest, index), task)
    return found


# ----------------------------------------------------------------------------------------------
# writing
class ExpertDirectoryBusy(RuntimeError):
    """Another process holds the expert directory's lock."""


@contextlib.contextmanager
def exclusive(out_dir: Path, *, enabled: bool = True):
    """Hold ``out_dir/.lock`` (an exclusive ``flock``) while training, so that two processes cannot
    write experts into one directory; the second is refused at once. The ranks of one torchrun
    job share the directory by design (``enabled=False``)."""
    if not enabled:
        yield
        return
    with open(Path(out_dir) / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExpertDirectoryBusy(f"{out_dir}: another process is training experts into this directory "
                                      "(its .lock is held); wait for it to finish or choose another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ExpertWriter:
    """Writes the experts of one ``settings`` dict into ``out_dir``: one file per expert, the manifest.

    On construction (nothing is written yet) an existing manifest must hold the same settings
    (else ``ValueError`` naming the keys that differ); the run's size becomes the larger of
    ``num_experts`` and the stored one, and ``done`` ({index: manifest entry}) lists the expert
    files already there, each validated, so that a trainer skips them (resume). Hold
    :func:`exclusive` around the writer's use.
    """

    def __init__(self, out_dir, settings: dict, num_experts: int):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.task = task_of(settings)
        self.digest = settings_hash(settings)
        self.manifest_path = self.out_dir / MANIFEST
        self.num_experts = num_experts
        if self.manifest_path.exists():
            old = read_manifest(self.manifest_path)
            if old["settings_hash"] != self.digest:
                differ = sorted(k for k in set(old["settings"]) | set(settings)
                                if old["settings"].get(k) != settings.get(k))
                raise ValueError(f"{self.manifest_path}: experts stored here were trained with other settings "
                                 f"(differ in: {', '.join(differ)}); use another out_dir or the same settings")
            self.num_experts = max(num_experts, old["num_experts"])
        self.done = scan_experts(self.out_dir, settings, self.digest)

    def manifest(self) -> dict:
        return {"format": FORMAT_VERSION, "settings": self.settings, "settings_hash": self.digest,
                "num_experts": self.num_experts, "experts": [self.done[i] for i in sorted(self.done)]}

    def write_manifest(self) -> None:
        write_manifest(self.manifest_path, self.manifest())

    def rescan(self) -> None:
        """Re-read ``done`` from the files (after other processes wrote experts into the directory)."""
        self.done = scan_experts(self.out_dir, self.settings, self.digest)

    def add(self, index: int, trajectory: torch.Tensor, *, seed: int, metrics: dict,
            update_manifest: bool = True) -> dict:
        """Store expert ``index``: ``trajectory`` float32 ``[expert_epochs + 1, P]`` (row 0 = initial
        parameters) into ``expert_NNN.safetensors`` (atomically) and, with ``update_manifest``,
        rewrite the manifest. ``metrics``: the task's :data:`ENTRY_METADATA` fields but ``seed``
        (in that order, stored with ``repr``). Returns the manifest entry."""
        expected = (self.settings["expert_epochs"] + 1, self.settings["num_params"])
        if tuple(trajectory.shape) != expected or trajectory.dtype != torch.float32:
            raise ValueError(f"trajectory: expected float32 {list(expected)} (expert_epochs + 1, num_params), got "
                             f"{trajectory.dtype} {list(trajectory.shape)}")
        required, group = ENTRY_METADATA[self.task]
        missing = sorted(set(required) - {"seed"} - set(metrics))
        if missing:
            raise ValueError(f"metrics: {self.task} experts need {', '.join(missing)}")
        entry = {"index": index, "file": expert_file(index), "seed": seed, **metrics}
        meta = {"settings_hash": self.digest, "expert": str(index), "seed": str(seed),
                **{key: repr(value) for key, value in metrics.items()}}
        atomic_write_bytes(self.out_dir / entry["file"], safetensors_bytes({"trajectory": trajectory}, metadata=meta))
        self.done[index] = entry
        if update_manifest:
            self.write_manifest()
        return entry


class ExpertStore:
    """Read access to an expert directory (forecasting models or classifiers, :func:`task_of`).

    ``num_experts`` counts the stored (complete) experts; ``trajectory(i)`` with
    ``0 <= i < num_experts`` returns the i-th of them (``indices[i]`` is its expert index; the
    two agree once a run is complete). The headers are checked once, here; the first trajectory
    access reads every stored trajectory into one tensor ``[num_experts, expert_epochs + 1, P]``
    that is kept (no file is opened again), provided it takes at most ``memory_limit`` bytes
    (default :data:`DEFAULT_MEMORY_LIMIT`; past it a ``MemoryError`` names the bound).
    """

    def __init__(self, out_dir, *, memory_limit: int = DEFAULT_MEMORY_LIMIT):
        if isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit < 1:
            raise ValueError(f"memory_limit: expected a positive number of bytes, got {memory_limit!r}")
        self.out_dir = Path(out_dir)
        self.manifest_path = self.out_dir / MANIFEST
        self.manifest = read_manifest(self.manifest_path)
        self.settings = self.manifest["settings"]
        self.task = task_of(self.settings)
        self._digest = self.manifest["settings_hash"]
        self.entries = sorted(self.manifest["experts"], key=lambda e: e["index"])
        self.indices = [e["index"] for e in self.entries]
        for entry in self.entries:
            _read_header(self.out_dir / entry["file"], self.settings, self._digest, entry["index"])
        self.memory_limit = memory_limit
        self._stacked: torch.Tensor | None = None

    @property
    def num_experts(self) -> int:
        return len(self.entries)

    @property
    def complete(self) -> bool:
        """Whether all ``manifest["num_experts"]`` experts of the run are stored."""
        return set(range(self.manifest["num_experts"])) <= set(self.indices)

    def trajectory(self, i: int) -> torch.Tensor:
        """[expert_epochs + 1, P] float32 (CPU), row 0 = initial parameters: a view of the kept
        tensor (read it, do not modify it; ``.clone()`` for a copy of your own)."""
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"i must be an int, got {type(i).__name__}") from None
        if not 0 <= i < self.num_experts:
            raise IndexError(f"i must be in [0, {self.num_experts}), got {i}")
        return self.trajectories()[i]

    def teacher_row(self, i: int) -> torch.Tensor:
        """[P]: the i-th stored expert's parameters at :meth:`teacher_epoch` (a view of the kept tensor)."""
        return self.trajectory(i)[self.teacher_epoch(i)]

    def trajectories(self) -> torch.Tensor:
        """[num_experts, expert_epochs + 1, P] float32: every stored trajectory, read on the first
        call and kept (later calls return the same tensor: read it, do not modify it)."""
        if self._stacked is None:
            rows, params = self.settings["expert_epochs"] + 1, self.settings["num_params"]
            size = self.num_experts * rows * params * 4
            if size > self.memory_limit:
                raise MemoryError(
                    f"{self.out_dir}: keeping the {self.num_experts} expert trajectories ({rows} x {params} float32 "
                    f"each) in memory takes {size / 2**20:.1f} MiB, above memory_limit={self.memory_limit} bytes "
                    f"({self.memory_limit / 2**20:.1f} MiB); open the store with ExpertStore(..., memory_limit=...) "
                    "set higher, or use fewer experts")
            self._stacked = torch.stack([self._read(entry) for entry in self.entries]) if self.entries else \
                torch.empty(0, rows, params)
        return self._stacked

    def _read(self, entry: dict) -> torch.Tensor:
        path = self.out_dir / entry["file"]
        try:
            with safe_open(str(path), framework="pt") as f:
                tensor = f.get_tensor("trajectory")
        except Exception as exc:
            raise ValueError(f"{path}: truncated or corrupt expert file ({exc})") from None
        expected = (self.settings["expert_epochs"] + 1, self.settings["num_params"])
        if tuple(tensor.shape) != expected:  # the file changed since the header check
            raise ValueError(f"{path}: trajectory has shape {list(tensor.shape)}, expected {list(expected)}")
        return tensor

    def teacher_epoch(self, i: int) -> int:
        """The teacher checkpoint of the i-th stored expert: its best epoch on validation (the last
        where the data has no validation split, or for experts stored before this was recorded)."""
        return int(self.entries[i].get("teacher_epoch", self.settings["expert_epochs"]))

    def teacher_test_mse(self) -> float:
        """Mean test MSE of the experts' teacher checkpoints."""
        return sum(e.get("teacher_test_mse", e["test_mse"]) for e in self.entries) / len(self.entries)

    def network(self) -> torch.nn.Module:
        """A fresh model of the experts' architecture (its weights are not an expert's; use it with
        flat parameters). Forecasting: ``build_model(model, ...)``; classification:
        ``build_network(arch, sample_shape, num_classes, seed=0, **net_kwargs)``."""
        s = self.settings
        if self.task == "classification":
            # imported here: the classification package imports this module
            from ddtime.driver.classification.networks import build_network

            return build_network(s["arch"], tuple(s["sample_shape"]), s["num_classes"], seed=0, **s["net_kwargs"])
        return build_model(s["model"], seq_len=s["seq_len"], pred_len=s["pred_len"], channels=s["channels"],
                           **s["model_kwargs"])

    def build_expert(self, i: int, *, epoch: int = -1, device="cpu") -> torch.nn.Module:
        """The model of the i-th stored expert with its parameters after ``epoch`` (-1 = last)."""
        return assign_flat_params(self.network(), self.trajectory(i)[epoch]).to(device)

    def matches(self, **settings) -> bool:
        """True when every given setting equals the manifest's (``num_experts``: at least that many stored)."""
        known = set(self.settings) | {"num_experts"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown expert setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key, value in settings.items():
            if key == "num_experts":
                if self.num_experts < value:
                    return False
            elif key == "model" and isinstance(value, str):
                if value.lower() != self.settings["model"]:
                    return False
            elif self.settings[key] != value:
                return False
        return True

    def __repr__(self) -> str:
        model = self.settings["arch" if self.task == "classification" else "model"]
        return (f"ExpertStore({str(self.out_dir)!r}, task={self.task!r}, model={model!r}, "
                f"experts={self.num_experts}/{self.manifest['num_experts']}, epochs={self.settings['expert_epochs']})")
