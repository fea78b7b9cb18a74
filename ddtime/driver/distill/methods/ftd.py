"""FTD: flat trajectory distillation (Du et al., 2023) for forecasting.

MTT matched against experts trained with sharpness-aware minimisation (``expert_optimizer``:
``"sam"``, ddtime's FTD, SAM with rho 0.05; ``"gsam"``, CondTSF's FTD, adaptive GSAM with rho 2.0
and alpha 0.4, RafaDD/CondTSF ``buffer.py``), plus an exponential moving average of the
synthetic windows that is what evaluation receives: ``ema <- decay * ema + (1 - decay) * windows``
after every update, from zero and bias-corrected (``ema / (1 - decay^t)`` after t updates, as
Adam's moments), so the random initial set carries no weight of its own. FTD uses a decay near 0.999 over thousands of image
iterations; the default here, 0.99, suits the few hundred iterations of forecasting distillation
(switchable with ``ema_decay``; 0 hands over the current set, as CondTSF's FTD code, which
has no moving average). ddtime's FTD is the default (EMA 0.99, SAM); the ``condtsf`` preset sets
CondTSF's (``ema_decay=0``, ``expert_optimizer="gsam"``). Other options are MTT's.
"""
from __future__ import annotations

import torch

from ddtime.driver.distill.methods.base import DistillContext, register_method
from ddtime.driver.distill.methods.mtt import MTT

__all__ = ["FTD", "FTD_EXPERT_OPTIMIZERS"]

#: sharpness-aware expert optimisers FTD matches against (``ddtime.driver.experts.train_experts``)
FTD_EXPERT_OPTIMIZERS = ("sam", "gsam")


@register_method
class FTD(MTT):
    name = "ftd"
    expert_optimizer = "sam"

    def __init__(self, *, ema_decay: float = 0.99, expert_optimizer: str = "sam", **mtt_options):
        super().__init__(**mtt_options)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a value in [0, 1), got {ema_decay!r}")
        if expert_optimizer not in FTD_EXPERT_OPTIMIZERS:
            raise ValueError(f"expert_optimizer: expected one of {FTD_EXPERT_OPTIMIZERS}, got {expert_optimizer!r}")
        self.ema_decay = float(ema_decay)
        self.expert_optimizer = expert_optimizer
        self.ema: torch.Tensor | None = None
        self.updates = 0

    def prepare(self, ctx: DistillContext) -> None:
        super().prepare(ctx)
        self.ema = torch.zeros_like(ctx.synthetic.windows().detach())
        self.updates = 0

    @torch.no_grad()
    def after_step(self, ctx: DistillContext, iteration: int) -> None:
        self.ema.mul_(self.ema_decay).add_(ctx.synthetic.windows().detach(), alpha=1.0 - self.ema_decay)
        self.updates += 1

    def final_windows(self, ctx: DistillContext) -> torch.Tensor:
        if self.updates == 0:
            return ctx.synthetic.windows().detach().clone()
        return self.ema / (1.0 - self.ema_decay ** self.updates)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "ema": self.ema.clone(), "ema_updates": torch.tensor(self.updates)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if "ema" not in state or state["ema"].shape != self.ema.shape or "ema_updates" not in state:
            raise ValueError("FTD.load_state_dict: missing or mis-shaped 'ema' / 'ema_updates'")
        self.ema.copy_(state.pop("ema"))
        self.updates = int(state.pop("ema_updates"))
        super().load_state_dict(state)
