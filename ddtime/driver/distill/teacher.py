"""The teacher shared by CondTSF's value update and DDTime's value term.

The teacher is a randomly chosen, fully trained expert at its best epoch on validation (its
final checkpoint where the data has no validation split, as under ``condtsf``:
``ExpertStore.teacher_epoch``), run in eval mode without gradients (its prediction is always
detached).

:func:`teacher_predict` runs any flat parameter vector through the template model
(``functional_call``, eval mode for the call). :class:`TeacherForecaster` is the per-update
path of DDTime's value term: an eval-mode copy of the template that receives a teacher's
parameters once per draw, so that each update is one plain no-grad forward.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import torch

from ddtime.driver.models import assign_flat_params, functional_forward

__all__ = ["sample_teacher", "teacher_predict", "eval_mode", "TeacherForecaster"]


def sample_teacher(experts, generator: torch.Generator, device: str | torch.device = "cpu",
                   pool: Sequence[int] | None = None) -> torch.Tensor:
    """Flat parameters ``[P]`` of a random expert of ``experts`` (an ExpertStore) at its teacher epoch,
    drawn from the expert indices ``pool`` (default: every expert).

    The row is the store's kept tensor (moved to ``device``): read it, do not modify it.
    """
    if experts is None or experts.num_experts < 1:
        raise ValueError("experts: the teacher needs at least one trained expert")
    if pool is not None:
        pool = list(pool)
        if not pool or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < experts.num_experts
                           for i in pool):
            raise ValueError(f"pool: expected expert indices in [0, {experts.num_experts}), got {pool!r}")
    draw = int(torch.randint(0, experts.num_experts if pool is None else len(pool), (1,), generator=generator))
    index = draw if pool is None else pool[draw]
    return experts.teacher_row(index).to(device)


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


class TeacherForecaster:
    """``forecaster(params, x)`` equals ``teacher_predict(model, params, x)``, without the
    per-call parameter swap and mode switch.

    Holds an eval-mode copy of ``model`` whose parameters are overwritten with ``params`` only
    when another teacher row comes in (a different tensor, or the same one modified in place);
    its buffers are the template's own tensors, as under ``functional_call``.
    """

    def __init__(self, model: torch.nn.Module):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        for name, buffer in model.named_buffers():
            owner, _, leaf = name.rpartition(".")
            self.module.get_submodule(owner)._buffers[leaf] = buffer
        self._loaded: torch.Tensor | None = None
        self._version = -1

    @torch.no_grad()
    def __call__(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Forecast ``[B, N, pred_len]`` of ``x`` ``[B, N, seq_len]`` under flat ``params`` ``[P]`` (detached)."""
        if params is not self._loaded or params._version != self._version:
            assign_flat_params(self.module, params)
            self._loaded, self._version = params, params._version
        return self.module(x.detach())
