"""Reading an expert directory: :class:`ExpertStore` (forecasting models or classifiers).

The layout and its checks are :mod:`ddtime.driver.experts.layout`; writing is
:mod:`ddtime.driver.experts.writer`. The store returns what is stored (settings, trajectories);
each task builds its network from the settings: :func:`ddtime.driver.experts.train.forecasting_network`,
:func:`ddtime.driver.classification.trajectories.classifier_network`.
"""
from __future__ import annotations

import operator
from pathlib import Path

import torch
from safetensors import safe_open

from ddtime.driver.experts.layout import MANIFEST, read_header, read_manifest, task_of

__all__ = ["ExpertStore", "DEFAULT_MEMORY_LIMIT"]

#: default bound of the trajectories an ExpertStore keeps in memory (bytes)
DEFAULT_MEMORY_LIMIT = 2 * 2**30


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
            read_header(self.out_dir / entry["file"], self.settings, self._digest, entry["index"])
        self.memory_limit = memory_limit
        self._stacked: torch.Tensor | None = None

    @property
    def num_experts(self) -> int:
        return len(self.entries)

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

    def __repr__(self) -> str:
        model = self.settings["arch" if self.task == "classification" else "model"]
        return (f"ExpertStore({str(self.out_dir)!r}, task={self.task!r}, model={model!r}, "
                f"experts={self.num_experts}/{self.manifest['num_experts']}, epochs={self.settings['expert_epochs']})")
