"""DATM: difficulty-aligned trajectory matching (Guo et al., 2024) for forecasting.

MTT whose start-epoch window moves up with the iterations, as in CondTSF's DATM code: it
starts at ``[0, 2)`` and every ``window_every`` (40) iterations both ends move up by one, the
lower end capped at ``max_start_epoch + 8`` and the upper at ``max_start_epoch + 12``
(``[12, 16)`` at most with the default 4); the range is also clamped so that start + M stays
inside the expert trajectories. DATM's learnable soft labels become a separate learnable label
tensor ``[S, N, pred_len]`` on the synthetic set, initialised from the real labels
(``soft_label_init="data"``) or, as DATM initialises its logits from an expert, from a random
fully trained expert's forecast (``"teacher"``). Other options are MTT's.
"""
from __future__ import annotations

from ddtime.driver.checks import check_choice, check_int
from ddtime.driver.distill.methods.base import DistillContext, register_method
from ddtime.driver.distill.methods.mtt import MTT
from ddtime.driver.distill.teacher import sample_teacher, teacher_predict

__all__ = ["DATM"]

SOFT_LABEL_INITS = ("data", "teacher")


@register_method
class DATM(MTT):
    name = "datm"

    def __init__(self, *, window_every: int = 40, initial_window: tuple[int, int] = (0, 2),
                 soft_labels: bool = True, soft_label_init: str = "data", **mtt_options):
        super().__init__(**mtt_options)
        check_int("window_every", window_every)
        lo, hi = initial_window
        if not 0 <= lo < hi:
            raise ValueError(f"initial_window: expected 0 <= lo < hi, got {initial_window!r}")
        check_choice("soft_label_init", soft_label_init, SOFT_LABEL_INITS)
        self.window_every, self.initial_window = window_every, (int(lo), int(hi))
        self.soft_labels, self.soft_label_init = bool(soft_labels), soft_label_init

    def start_range(self, iteration: int) -> tuple[int, int]:
        moved = iteration // self.window_every
        lo = min(self.initial_window[0] + moved, self.max_start_epoch + 8)
        hi = min(self.initial_window[1] + moved, self.max_start_epoch + 12)
        return lo, hi

    def prepare(self, ctx: DistillContext) -> None:
        super().prepare(ctx)
        if self.soft_labels and ctx.synthetic.soft_labels is None:
            init = None
            if self.soft_label_init == "teacher":
                teacher = sample_teacher(ctx.experts, ctx.generator, ctx.device)
                init = teacher_predict(ctx.model, teacher, ctx.synthetic.inputs())
            ctx.synthetic.enable_soft_labels(init)
