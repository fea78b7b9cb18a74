"""Writing an expert directory: one expert file at a time, then the manifest, under a directory lock.

Every file is written atomically (``*.tmp``, fsync, ``os.replace``), so an expert file is complete or
absent; a second process training into the same directory is refused (:class:`ExpertDirectoryBusy`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from ddtime.driver.atomic import atomic_write_bytes
from ddtime.driver.experts.layout import (ENTRY_METADATA, FORMAT_VERSION, MANIFEST, expert_file, read_manifest,
                                          scan_experts, settings_hash, task_of)

__all__ = ["ExpertWriter", "ExpertDirectoryBusy", "exclusive", "write_manifest"]

def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


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
