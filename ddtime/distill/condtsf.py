"""CondTSF's value update (Ding et al., NeurIPS 2024), usable on top of any base method.

On every ``gap``-th iteration (``(iteration + 1) % gap == 0``, as in CondTSF's code) the loop
skips the base update and moves the synthetic labels toward a teacher's forecast of the
synthetic inputs: ``y <- (1 - beta) * y + beta * f_teacher(x)``, beta 0.01, gap 3, once per
update slot of the iteration (CondTSF's ``multistep``: twice), each with a freshly drawn teacher.
The teacher is a random expert at its teacher epoch, in eval mode (:mod:`ddtime.distill.teacher`).
"""
from __future__ import annotations

import torch

from ddtime.distill.teacher import teacher_predict

__all__ = ["is_value_update", "value_update"]


def is_value_update(iteration: int, gap: int = 3) -> bool:
    """Whether ``iteration`` (0-based) is a CondTSF value-update iteration."""
    if gap < 1:
        raise ValueError(f"gap: expected a positive int, got {gap!r}")
    return (iteration + 1) % gap == 0


@torch.no_grad()
def value_update(synthetic, model: torch.nn.Module, teacher_params: torch.Tensor, *, beta: float = 0.01,
                 series_write: str = "sequential") -> None:
    """In place: ``labels <- (1 - beta) * labels + beta * teacher(inputs)`` on a SyntheticSet.

    The teacher forecasts every window's inputs first; on the ``series`` representation the
    windows are then written one after another (CondTSF's code; see ``SyntheticSet.blend_labels``).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta: expected a value in [0, 1], got {beta!r}")
    prediction = teacher_predict(model, teacher_params, synthetic.inputs())
    synthetic.blend_labels(prediction, beta, series_write=series_write)
