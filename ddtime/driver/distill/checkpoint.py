"""Atomic checkpoints of a distillation run and the synthetic-set file.

* Run checkpoints (``checkpoint.pt``): a dict of tensors, numbers, strings, lists and dicts
  written with ``torch.save`` and read back with ``torch.load(..., weights_only=True)``.
* Synthetic sets (``synthetic.safetensors``): the windows ``[S, N, L]`` under key
  ``"windows"`` plus string metadata.

Every write goes to ``path.tmp``, is fsynced, then ``os.replace``-d over ``path``; a truncated
or corrupt file raises ``RuntimeError`` naming it.
"""
from __future__ import annotations

import io
import os
from typing import Any

import torch

from ddtime.driver.atomic import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "save_synthetic", "load_synthetic"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a run state (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a run state saved by :func:`save_checkpoint` (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, bad pickle, ...
        raise RuntimeError(f"checkpoint {os.fspath(path)!r} is corrupt or truncated: {exc}") from exc
    if not isinstance(state, dict):
        raise RuntimeError(f"checkpoint {os.fspath(path)!r}: expected a dict, got {type(state).__name__}")
    return state


def save_synthetic(path: str | os.PathLike, windows: torch.Tensor, metadata: dict[str, Any] | None = None) -> None:
    """Save synthetic windows ``[S, N, L]`` as safetensors (metadata values stored as strings)."""
    from safetensors.torch import save

    if not isinstance(windows, torch.Tensor) or windows.dim() != 3:
        raise ValueError(f"windows: expected a [S, N, L] tensor, got {getattr(windows, 'shape', type(windows))}")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save({"windows": windows.detach().cpu().contiguous()}, metadata=meta))


def load_synthetic(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, str]]:
    """Read ``(windows [S, N, L], metadata)`` written by :func:`save_synthetic`."""
    from safetensors import safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(f"synthetic set {os.fspath(path)!r} does not exist")
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
            windows = f.get_tensor("windows")
    except Exception as exc:
        raise RuntimeError(f"synthetic set {os.fspath(path)!r} is corrupt or not a ddtime synthetic set: {exc}") from exc
    return windows, metadata
