"""DM: distribution matching (Zhao & Bilen, 2023) for forecasting.

Per iteration a network is drawn, either a random snapshot (any epoch, initial included) of a
random expert trajectory (``network="expert"``, default) or a freshly initialised model
(``"random"``, seeded from the run's generator); the base loss is the squared distance of the
mean embeddings (``model.embed``) of a batch of ``real_batch`` real training inputs and of the
synthetic inputs: ``||mean embed(x_real) - mean embed(x_syn)||^2``. Only the synthetic inputs
receive gradients from this loss; labels move through CondTSF's update or DDTime's terms.
"""
from __future__ import annotations

import copy

import torch

from ddtime.driver.checks import check_choice, check_int
from ddtime.driver.distill.matching import mean_embedding_distance
from ddtime.driver.distill.methods.base import DistillContext, DistillMethod, MethodOutput, register_method
from ddtime.driver.models import assign_flat_params, build_model

__all__ = ["DM"]

NETWORKS = ("expert", "random")


@register_method
class DM(DistillMethod):
    name = "dm"

    def __init__(self, *, network: str = "expert", real_batch: int = 256):
        check_choice("network", network, NETWORKS)
        check_int("real_batch", real_batch)
        self.network, self.real_batch = network, real_batch
        self.requires_experts = network == "expert"
        self._net: torch.nn.Module | None = None

    def prepare(self, ctx: DistillContext) -> None:
        if self.requires_experts and ctx.experts is None:
            raise ValueError("experts: method 'dm' with network='expert' needs expert trajectories")
        self._net = copy.deepcopy(ctx.model).requires_grad_(False)

    def _sample_network(self, ctx: DistillContext) -> torch.nn.Module:
        if self.network == "expert":
            trajectory = ctx.experts.trajectory(ctx.randint(0, ctx.experts.num_experts))
            flat = trajectory[ctx.randint(0, trajectory.shape[0])]
            return assign_flat_params(self._net, flat.to(ctx.device))
        net = build_model(ctx.model_name, seq_len=ctx.seq_len, pred_len=ctx.pred_len, channels=ctx.real_windows.shape[1],
                          seed=ctx.randint(0, 2**31 - 1), **ctx.options.get("model_kwargs", {}))
        return net.to(ctx.device).requires_grad_(False)

    def step(self, ctx: DistillContext, iteration: int) -> MethodOutput:
        net = self._sample_network(ctx)
        net.train()
        real = ctx.real_batch(self.real_batch)[..., : ctx.seq_len]
        with torch.no_grad():
            real_features = net.embed(real)
        return MethodOutput(loss=mean_embedding_distance(real_features, net.embed(ctx.synthetic.inputs())))
