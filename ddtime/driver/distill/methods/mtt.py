"""MTT: matching training trajectories (Cazenavette et al., 2022) for forecasting.

Per iteration: sample an expert trajectory and a start epoch t from ``start_range``; from
theta*_t take K unrolled SGD steps (MSE, functional forward, ``create_graph=True`` so the loss
reaches the synthetic data), each on ``syn_batch`` random synthetic windows with all their
channels (``SyntheticSet.window_rows``: on a channel-independent series set, the C rows of a
time window, as CondTSF's ``backbone.py`` draws from ``(W, N, 24, 1)``); the base loss is
CondTSF's normalised parameter distance
``||theta_K - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2``. The sampled trajectory is
used for ``updates_per_trajectory`` updates (CondTSF's ``multistep``).

Options (MTT's and CondTSF's defaults): ``syn_steps`` K 20, ``student_lr`` 3e-4, ``expert_epochs`` M 2,
``max_start_epoch`` 4 (start drawn from [0, 4)), ``updates_per_trajectory`` 2, ``syn_batch`` 64;
``learn_lr`` (off) learns log(student lr) with its own Adam lr ``lr_lr``.

Labels, as CondTSF's ``distill.py``/``backbone.py``: the inner loop trains on
``label_mix * detach(y) + (1 - label_mix) * f_{theta*_{t+M}}(x)`` with ``label_mix`` 0.2, the
target expert's forecast differentiable through the inputs x, so the base gradient reaches the
inputs only and the labels move only through CondTSF's value update or DDTime's value term.
``learn_labels=True`` (a named departure, off) lets the base gradient reach y as well.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ddtime.driver.checks import check_int, check_number
from ddtime.driver.distill.methods.base import DistillContext, DistillMethod, MethodOutput, register_method
from ddtime.driver.models import functional_forward

__all__ = ["MTT", "normalized_param_distance"]


def normalized_param_distance(student: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||student - target||^2 / ||start - target||^2`` (all ``[P]``), 0-dim. The caller makes sure
    start and target differ (:meth:`MTT._trajectory` checks the rows on the host, before they reach
    the device, so that the update never waits for the device)."""
    return (student - target).pow(2).sum() / (start - target).pow(2).sum()


@register_method
class MTT(DistillMethod):
    name = "mtt"
    has_unrolled_student = True

    def __init__(self, *, syn_steps: int = 20, student_lr: float = 3e-4, expert_epochs: int = 2,
                 max_start_epoch: int = 4, updates_per_trajectory: int = 2, syn_batch: int = 64,
                 learn_lr: bool = False, lr_lr: float = 0.01, label_mix: float = 0.2, learn_labels: bool = False):
        for name, v in (("syn_steps", syn_steps), ("expert_epochs", expert_epochs), ("max_start_epoch", max_start_epoch),
                        ("updates_per_trajectory", updates_per_trajectory), ("syn_batch", syn_batch)):
            check_int(name, v)
        check_number("student_lr", student_lr, positive=True)
        check_number("label_mix", label_mix, minimum=0.0, maximum=1.0)
        self.syn_steps, self.student_lr, self.expert_epochs = syn_steps, float(student_lr), expert_epochs
        self.max_start_epoch, self.syn_batch, self.label_mix = max_start_epoch, syn_batch, float(label_mix)
        self.updates_per_iteration = updates_per_trajectory
        self.learn_lr, self.lr_lr = bool(learn_lr), float(lr_lr)
        self.learn_labels = bool(learn_labels)
        self.log_lr = torch.tensor(math.log(self.student_lr), requires_grad=True) if self.learn_lr else None
        self._sampled: tuple[int, torch.Tensor, int] | None = None  # (iteration, trajectory, start epoch)
        self._epochs = 0

    # schedule ---------------------------------------------------------------------------
    def start_range(self, iteration: int) -> tuple[int, int]:
        """Half-open range ``[lo, hi)`` of start epochs at ``iteration``."""
        return 0, self.max_start_epoch

    def _clamped_range(self, iteration: int) -> tuple[int, int]:
        lo, hi = self.start_range(iteration)
        hi = min(hi, self._epochs - self.expert_epochs + 1)
        return min(lo, hi - 1), hi

    # interface --------------------------------------------------------------------------
    def prepare(self, ctx: DistillContext) -> None:
        if ctx.experts is None:
            raise ValueError(f"experts: method {self.name!r} needs expert trajectories")
        self._epochs = ctx.experts.trajectory(0).shape[0] - 1
        if self._epochs < self.expert_epochs:
            raise ValueError(f"expert_epochs: {self.expert_epochs} target epochs ahead, but the experts have only "
                             f"{self._epochs} epochs")
        if self.log_lr is not None:
            self.log_lr = self.log_lr.detach().to(ctx.device).requires_grad_(True)
        self._sampled = None

    def synthetic_parameters(self) -> list[torch.Tensor | dict[str, Any]]:
        return [{"params": [self.log_lr], "lr": self.lr_lr}] if self.log_lr is not None else []

    def _trajectory(self, ctx: DistillContext, iteration: int) -> tuple[torch.Tensor, int]:
        """``([2, P], start)``: the start and target parameters of this iteration's draw, on the device."""
        if self._sampled is None or self._sampled[0] != iteration:
            expert = ctx.randint(0, ctx.experts.num_experts)
            lo, hi = self._clamped_range(iteration)
            start = ctx.randint(lo, hi)
            rows = ctx.experts.trajectory(expert)[[start, start + self.expert_epochs]]
            if torch.equal(rows[0], rows[1]):  # the store's rows, on the host: no device wait
                raise RuntimeError(f"expert trajectory {expert}: the parameters at epochs {start} and "
                                   f"{start + self.expert_epochs} coincide (zero distance)")
            self._sampled = (iteration, rows.to(ctx.device), start)
        return self._sampled[1], self._sampled[2]

    def unroll(self, ctx: DistillContext, start_params: torch.Tensor, windows: torch.Tensor,
               target_params: torch.Tensor) -> torch.Tensor:
        """K differentiable SGD steps of the student from ``start_params`` on ``windows``; returns ``[P]``."""
        lr = self.log_lr.exp() if self.log_lr is not None else self.student_lr
        student = start_params.detach().clone().requires_grad_(True)
        ctx.model.train()
        x_all, y_all = windows[..., : ctx.seq_len], windows[..., ctx.seq_len:]
        if not self.learn_labels:
            y_all = y_all.detach()
        if self.label_mix < 1.0:  # the target expert's forecast, differentiable through x (CondTSF)
            target_y = functional_forward(ctx.model, target_params.detach(), x_all)
            y_all = self.label_mix * y_all + (1.0 - self.label_mix) * target_y
        groups = ctx.synthetic.window_rows()
        if groups.numel() != windows.shape[0]:
            raise ValueError(f"windows: expected the synthetic set's {groups.numel()} rows, got {windows.shape[0]}")
        picks = torch.stack([torch.randperm(groups.shape[0], generator=ctx.generator)[: self.syn_batch]
                             for _ in range(self.syn_steps)])  # [K, batch]: one copy to the device per update
        picks = groups[picks].flatten(1).to(windows.device)
        for idx in picks:
            loss = torch.nn.functional.mse_loss(functional_forward(ctx.model, student, x_all[idx]), y_all[idx])
            (grad,) = torch.autograd.grad(loss, student, create_graph=True)
            student = student - lr * grad
        return student

    def step(self, ctx: DistillContext, iteration: int) -> MethodOutput:
        (start_params, target_params), start = self._trajectory(ctx, iteration)
        student = self.unroll(ctx, start_params, ctx.synthetic.windows(), target_params)
        loss = normalized_param_distance(student, start_params, target_params)
        metrics = {"start_epoch": float(start)}
        if self.log_lr is not None:
            metrics["student_lr"] = self.log_lr.detach().exp()  # a number at flush_history()
        return MethodOutput(loss=loss, student_params=student, metrics=metrics)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"log_lr": self.log_lr.detach().clone()} if self.log_lr is not None else {}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = {"log_lr"} if self.log_lr is not None else set()
        if set(state) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected keys {sorted(expected)}, got {sorted(state)}")
        if self.log_lr is not None:
            self.log_lr.copy_(state["log_lr"])
