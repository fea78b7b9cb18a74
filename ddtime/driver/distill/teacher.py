"""The teacher shared by CondTSF's value update and DDTime's value term.

The teacher is a randomly chosen, fully trained expert at its best epoch on validation (its
final checkpoint where the data has no validation split, as under ``condtsf``:
``ExpertStore.teacher_epoch``), run in eval mode without gradients (its prediction is always
detached).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from ddtime.driver.models import functional_forward

__all__ = ["sample_teacher", "teacher_predict", "eval_mode"]


def sample_teacher(experts, generator: torch.Generator, device: str | torch.device = "cpu",
                   pool: Sequence[int] | None = None) -> torch.Tensor:
    """Flat parameters ``[P]`` of a random expert of ``experts`` (an ExpertStore) at its teacher epoch,
    drawn from the expert indices ``pool`` (default: every expert)."""
    if experts is None or experts.num_experts < 1:
        raise ValueError("experts: the teacher needs at least one trained expert")
    if pool is not None:
        pool = list(pool)
        if not pool or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < experts.num_experts
                           for i in pool):
            raise ValueError(f"pool: expected expert indices in [0, {experts.num_experts}), got {pool!r}")
    draw = int(torch.randint(0, experts.num_experts if pool is None else len(pool), (1,), generator=generator))
    index = draw if pool is None else pool[draw]
    return experts.trajectory(index)[experts.teacher_epoch(index)].to(device)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Temporarily put ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def teacher_predict(model: torch.nn.Module, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Teacher forecast ``[B, N, pred_len]`` of inputs ``x`` ``[B, N, seq_len]`` (detached, eval mode)."""
    with eval_mode(model):
        return functional_forward(model, params, x.detach())
