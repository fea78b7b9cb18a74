"""DC: dataset condensation with gradient matching (Zhao, Mopuri & Bilen, ICLR 2021) for forecasting.

Per iteration a network theta is drawn: a snapshot of a random expert at a start epoch drawn from
``[0, max_start_epoch)`` (``network="expert"``, default; CondTSF's ``backbone.py`` DC starts from
the expert's start epoch as its MTT does) or a freshly initialised model (``"random"``, DC's random
initialisations, seeded from the run's generator). Each of the iteration's ``updates_per_network``
updates draws ``syn_batch`` synthetic time windows (all their channel rows, as MTT) and
``real_batch`` real training rows, and returns the base loss

    L_base = mean_p (g_syn[p] - g_real[p])^2,   g = d MSE(f_theta(x), y) / d theta   ([P], flat)

the mean squared difference of the two flat gradients (CondTSF's ``backbone.py``; Zhao et al. sum a
layer-wise cosine distance instead). g_syn is differentiable w.r.t. the synthetic inputs
(``create_graph``); the labels are detached, as in CondTSF's code, so they move only through CondTSF's
value update or DDTime's terms. After each update the network takes one SGD step on the same
synthetic batch, ``theta <- theta - student_lr * detach(g_syn)`` (DC's inner network update).
CondTSF's code makes ``syn_steps`` = 20 such updates per trajectory; here an update is one loop update
(the loop's Adam step, CondTSF's update in its iterations), ``updates_per_network`` of them per iteration.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ddtime.driver.checks import check_choice, check_int, check_number
from ddtime.driver.distill.methods.base import DistillContext, DistillMethod, MethodOutput, register_method
from ddtime.driver.models import build_model, flat_params, functional_forward

__all__ = ["DC", "gradient_distance"]

NETWORKS = ("expert", "random")


def gradient_distance(g_syn: torch.Tensor, g_real: torch.Tensor) -> torch.Tensor:
    """``mean_p (g_syn[p] - g_real[p])^2`` of two flat gradients ``[P]``, 0-dim."""
    return (g_syn - g_real).pow(2).mean()


@register_method
class DC(DistillMethod):
    name = "dc"

    def __init__(self, *, network: str = "expert", max_start_epoch: int = 4, updates_per_network: int = 2,
                 syn_batch: int = 64, real_batch: int = 256, student_lr: float = 3e-4):
        check_choice("network", network, NETWORKS)
        for name, value in (("max_start_epoch", max_start_epoch), ("updates_per_network", updates_per_network),
                            ("syn_batch", syn_batch), ("real_batch", real_batch)):
            check_int(name, value)
        check_number("student_lr", student_lr, positive=True)
        self.network, self.max_start_epoch, self.student_lr = network, max_start_epoch, float(student_lr)
        self.syn_batch, self.real_batch = syn_batch, real_batch
        self.updates_per_iteration = updates_per_network
        self.requires_experts = network == "expert"
        self._sampled: tuple[int, torch.Tensor, int] | None = None  # (iteration, network [P], start epoch or -1)

    def prepare(self, ctx: DistillContext) -> None:
        if self.requires_experts and ctx.experts is None:
            raise ValueError("experts: method 'dc' with network='expert' needs expert trajectories")
        self._sampled = None

    def _network(self, ctx: DistillContext, iteration: int) -> tuple[torch.Tensor, int]:
        """The iteration's network ``[P]`` (after the SGD steps of its earlier updates) and its start epoch."""
        if self._sampled is None or self._sampled[0] != iteration:
            if self.network == "expert":
                trajectory = ctx.experts.trajectory(ctx.randint(0, ctx.experts.num_experts))
                start = ctx.randint(0, min(self.max_start_epoch, trajectory.shape[0]))
                flat = trajectory[start].to(ctx.device)
            else:
                start = -1
                flat = flat_params(build_model(ctx.model_name, seq_len=ctx.seq_len, pred_len=ctx.pred_len,
                                               channels=ctx.real_windows.shape[1], seed=ctx.randint(0, 2**31 - 1),
                                               **ctx.options.get("model_kwargs", {}))).to(ctx.device)
            self._sampled = (iteration, flat, start)
        return self._sampled[1], self._sampled[2]

    def step(self, ctx: DistillContext, iteration: int) -> MethodOutput:
        theta, start = self._network(ctx, iteration)
        groups = ctx.synthetic.window_rows()
        pick = torch.randperm(groups.shape[0], generator=ctx.generator)[: self.syn_batch]
        syn = ctx.synthetic.windows()[groups[pick].flatten().to(ctx.device)]
        real = ctx.real_batch(self.real_batch)
        ctx.model.train()
        student = theta.detach().clone().requires_grad_(True)

        def grad(windows: torch.Tensor, create_graph: bool) -> torch.Tensor:
            x, y = windows[..., : ctx.seq_len], windows[..., ctx.seq_len:].detach()
            loss = F.mse_loss(functional_forward(ctx.model, student, x), y)
            return torch.autograd.grad(loss, student, create_graph=create_graph)[0]

        g_syn = grad(syn, True)
        g_real = grad(real, False)
        self._sampled = (iteration, theta - self.student_lr * g_syn.detach(), start)
        return MethodOutput(loss=gradient_distance(g_syn, g_real), metrics={"start_epoch": float(start)})
