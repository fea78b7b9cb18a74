"""CondTSF's value update (Ding et al., NeurIPS 2024), usable on top of any base method.

On every ``gap``-th iteration (``(iteration + 1) % gap == 0``, as in CondTSF's code) the loop
skips the base update and moves the synthetic labels toward a teacher's forecast of the
synthetic inputs: ``y <- (1 - beta) * y + beta * f_teacher(x)``, beta 0.01, gap 3, once per
update slot of the iteration (CondTSF's ``multistep``: twice), each with a freshly drawn teacher.
The teacher is a random expert at its teacher epoch, in eval mode (:mod:`ddtime.driver.distill.teacher`),
of the run's experts or of those ``teacher_optimizer`` names, drawn from every ``teacher_every``-th
expert. CondTSF's ``distill.py`` draws it from ``replay_buffer_{0..7}.pt``'s first expert of the SGD
experts (files of 5: experts 0, 5, ..., 35) at its final epoch, also for FTD: the ``condtsf``
preset sets ``teacher_every=5``, ``teacher_optimizer="sgd"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.distill.synthetic import SERIES_WRITES

#: expert optimisers a teacher store can be named by (``ddtime.driver.experts.EXPERT_OPTIMIZERS``)
TEACHER_OPTIMIZERS = ("sgd", "sam", "gsam")
from ddtime.driver.distill.teacher import teacher_predict

__all__ = ["CondTSFUpdate", "TEACHER_OPTIMIZERS"]


@dataclass(frozen=True)
class CondTSFUpdate:
    """Settings of CondTSF's value update and the update itself.

    beta: step toward the teacher's forecast; gap: every ``gap``-th iteration is an update
    iteration; series_write: how a ``series`` set writes overlapping windows
    (``"sequential"``, CondTSF's code; ``"average"`` is a named departure, see
    ``SyntheticSet.blend_labels``); teacher_every: teachers come from experts 0, k, 2k, ...
    (1: every expert); teacher_optimizer: the expert optimiser of the store teachers come from
    (None: the run's experts, those of its method).
    """

    beta: float = 0.01
    gap: int = 3
    series_write: str = "sequential"
    teacher_every: int = 1
    teacher_optimizer: str | None = None

    def __post_init__(self):
        check_number("beta", self.beta, minimum=0.0, maximum=1.0)
        check_int("gap", self.gap)
        check_choice("series_write", self.series_write, SERIES_WRITES)
        check_int("teacher_every", self.teacher_every)
        if self.teacher_optimizer is not None:
            check_choice("teacher_optimizer", self.teacher_optimizer, TEACHER_OPTIMIZERS)

    def teacher_pool(self, num_experts: int) -> list[int] | None:
        """Expert indices teachers are drawn from (None: all ``num_experts``)."""
        return None if self.teacher_every == 1 else list(range(0, num_experts, self.teacher_every))

    def is_due(self, iteration: int) -> bool:
        """Whether ``iteration`` (0-based) is a value-update iteration."""
        return (iteration + 1) % self.gap == 0

    @torch.no_grad()
    def apply(self, synthetic, model: torch.nn.Module, teacher_params: torch.Tensor) -> None:
        """In place: ``labels <- (1 - beta) * labels + beta * teacher(inputs)`` on a SyntheticSet.

        The teacher forecasts every window's inputs first; on the ``series`` representation the
        windows are then written one after another (CondTSF's code; see ``SyntheticSet.blend_labels``).
        """
        prediction = teacher_predict(model, teacher_params, synthetic.inputs())
        synthetic.blend_labels(prediction, self.beta, series_write=self.series_write)
