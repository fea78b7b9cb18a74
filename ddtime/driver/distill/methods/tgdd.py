"""TGDD (Ran et al.): trajectory-guided distribution matching, for forecasting.

Classes become *groups* of windows. At :meth:`TGDD.prepare` the real training inputs are
embedded (``model.embed``, the layer before the head) by the final snapshot of expert 0 and
clustered by k-means into ``groups`` groups (k-means++ start, Lloyd iterations, seeded from the
run's seed, so a resumed run rebuilds the same groups). Each synthetic window is assigned to a
group once, from the same features: every group first takes its nearest still-unassigned
window (so no group is empty), the remaining windows go to their nearest centroid.

Each iteration draws a trajectory i and a stage j (``0 <= j <= E``) from the run's generator;
snapshot j is the encoder, and snapshot j' drawn uniformly from the expert region
``j .. min(j + region, E)`` is the constraint network. Then, group by group (one update per
group per iteration), with real inputs ``r`` (a random batch of the group's windows) and the
group's synthetic windows ``(x, y)``::

    loss_g = || mean embed_j(r) - mean embed_j(x) ||^2 + alpha * MSE(f_j'(x), y)

The update is SGD with momentum 0.5, one momentum buffer per group, learning rate
``lr_per_sample * n_g`` (``n_g`` synthetic windows in the group: both terms average over the
group, so this gives every window the same step size whatever the group size). The DDTime terms
(``ctx.extra_loss``) enter group g's update as ``detach(loss_g) * (n_g / S) * extra``: summed over
the iteration each window sees ``L_base / detach(L_base) + extra`` as the other methods do, up
to the factor ``detach(loss_g)`` that keeps TGDD's own loss scale for its SGD learning rate.
The snapshots run in eval mode (no dropout noise in features or forecasts). The constraint's
gradient reaches both the synthetic inputs and their labels. ``alpha`` is used
as is: the classifier loop's rescaling by the embedding width
(:mod:`ddtime.driver.classification.distill`) keeps the paper's cross-entropy calibration, which an MSE
constraint on forecasts does not have.
"""
from __future__ import annotations

import copy
import math

import torch

from ddtime.driver.checks import check_int, check_number
from ddtime.driver.distill.matching import default_alpha, mean_embedding_distance
from ddtime.driver.distill.methods.base import DistillContext, DistillMethod, MethodOutput, register_method
from ddtime.driver.models import functional_forward

__all__ = ["TGDD", "kmeans"]


def kmeans(features: torch.Tensor, k: int, *, generator: torch.Generator, iterations: int = 50
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ then Lloyd iterations on ``features (B, F)``; returns ``(centroids (k, F), labels (B,))``.

    An empty cluster is re-seeded with the point farthest from its centroid. Requires ``k <= B``.
    """
    b = features.shape[0]
    if not 1 <= k <= b:
        raise ValueError(f"groups: expected 1 <= groups <= {b} (real windows), got {k}")
    x = features.double()
    first = int(torch.randint(b, (1,), generator=generator))
    centroids = x[first:first + 1]
    d2 = torch.cdist(x, centroids).pow(2).min(1).values
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / b)
        nxt = int(torch.multinomial(probs.float(), 1, generator=generator))
        centroids = torch.cat([centroids, x[nxt:nxt + 1]])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
    labels = torch.cdist(x, centroids).argmin(1)
    for _ in range(iterations):
        new = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        dist = torch.cdist(x, centroids).gather(1, labels[:, None]).squeeze(1)
        for c in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.argmax())
            new[c], counts[c], dist[far] = x[far], 1, -1.0
        centroids = new / counts[:, None]
        new_labels = torch.cdist(x, centroids).argmin(1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids.to(features.dtype), labels


def _assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Group of each synthetic window ``features (S, F)``: every group first takes its nearest
    unassigned window, the rest go to the nearest centroid. Returns ``(S,)`` int64."""
    dist = torch.cdist(features.double(), centroids.double())
    labels = dist.argmin(1)
    taken = torch.zeros(features.shape[0], dtype=torch.bool)
    for g in range(centroids.shape[0]):
        d = dist[:, g].masked_fill(taken, math.inf)
        s = int(d.argmin())
        labels[s], taken[s] = g, True
    return labels


@register_method
class TGDD(DistillMethod):
    """Options: ``groups`` (default ``S // 2`` clipped to [1, 10]), ``alpha`` (default 2.5 when the
    mean group holds at most 10 synthetic windows, else 0.5), ``region`` (6), ``lr_per_sample``
    (SGD learning rate per synthetic window, 0.1), ``momentum`` (0.5), ``real_batch`` (256 real
    windows per group and update), ``kmeans_iterations`` (50)."""

    name = "tgdd"
    requires_experts = True

    def __init__(self, *, groups: int | None = None, alpha: float | None = None, region: int = 6,
                 lr_per_sample: float = 0.1, momentum: float = 0.5, real_batch: int = 256, kmeans_iterations: int = 50):
        check_int("region", region, minimum=0)
        check_int("real_batch", real_batch)
        check_int("kmeans_iterations", kmeans_iterations, minimum=0)
        check_int("groups", groups, optional=True)
        check_number("alpha", alpha, minimum=0.0, optional=True)
        check_number("lr_per_sample", lr_per_sample, positive=True)
        check_number("momentum", momentum, minimum=0.0, below=1.0)
        self.groups, self.alpha, self.region = groups, alpha, region
        self.lr_per_sample, self.momentum, self.real_batch = float(lr_per_sample), float(momentum), real_batch
        self.kmeans_iterations = kmeans_iterations
        self._net: torch.nn.Module | None = None
        self.centroids: torch.Tensor | None = None
        self.real_groups: torch.Tensor | None = None   # (B,) group of every real training window
        self.syn_groups: torch.Tensor | None = None    # (S,) group of every synthetic window
        self._buffers: list[list[torch.Tensor]] = []   # per group, one momentum buffer per parameter
        self.k = 0
        self.alpha_value = 0.0

    # setup ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _features(self, flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([functional_forward(self._net, flat, chunk, method="embed")
                          for chunk in inputs.split(4096)])

    def prepare(self, ctx: DistillContext) -> None:
        if ctx.experts is None:
            raise ValueError("experts: method 'tgdd' needs expert trajectories")
        self._net = copy.deepcopy(ctx.model).requires_grad_(False).eval()
        windows = ctx.synthetic.windows().detach()
        s = windows.shape[0]
        k = self.groups if self.groups is not None else min(10, max(1, s // 2))
        if k > s:
            raise ValueError(f"groups: expected at most {s} (synthetic windows), got {k}")
        self.k = k
        final = ctx.experts.trajectory(0)[-1].to(ctx.device)
        real_feat = self._features(final, ctx.real_windows[..., : ctx.seq_len])
        g = torch.Generator().manual_seed(ctx.generator.initial_seed())
        centroids, labels = kmeans(real_feat.cpu(), k, generator=g, iterations=self.kmeans_iterations)
        self.centroids, self.real_groups = centroids, labels
        self.syn_groups = _assign(self._features(final, windows[..., : ctx.seq_len]).cpu(), centroids)
        self._real_idx = [torch.nonzero(labels == c).flatten() for c in range(k)]
        self._syn_idx = [torch.nonzero(self.syn_groups == c).flatten() for c in range(k)]
        self.alpha_value = self.alpha if self.alpha is not None else default_alpha(math.ceil(s / k))
        self._buffers = [[torch.zeros_like(p) for p in ctx.synthetic.parameters()] for _ in range(k)]

    # one iteration --------------------------------------------------------------------------
    def group_losses(self, ctx: DistillContext, encoder: torch.Tensor, expert: torch.Tensor, group: int,
                     windows: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(matching, constraint)`` of ``group`` for synthetic ``windows [S, N, L]`` and real
        windows ``real [B, N, L]`` of that group, under encoder / constraint snapshots ``[P]``."""
        syn = windows[self._syn_idx[group].to(windows.device)]
        with torch.no_grad():
            real_feat = functional_forward(self._net, encoder, real[..., : ctx.seq_len], method="embed")
        syn_feat = functional_forward(self._net, encoder, syn[..., : ctx.seq_len], method="embed")
        match = mean_embedding_distance(real_feat, syn_feat)
        pred = functional_forward(self._net, expert, syn[..., : ctx.seq_len])
        constraint = (pred - syn[..., ctx.seq_len:]).pow(2).mean()
        return match, constraint

    def step(self, ctx: DistillContext, iteration: int) -> MethodOutput:
        trajectory = ctx.experts.trajectory(ctx.randint(0, ctx.experts.num_experts))
        m = trajectory.shape[0]
        j = ctx.randint(0, m)
        j2 = ctx.randint(j, min(j + self.region, m - 1) + 1)
        encoder, expert = trajectory[j].to(ctx.device), trajectory[j2].to(ctx.device)
        params = ctx.synthetic.parameters()
        s = ctx.synthetic.num_windows
        total_match = total_constraint = 0.0
        terms: dict[str, float] = {}
        for group in range(self.k):
            idx = self._real_idx[group]
            pick = idx[torch.randperm(idx.numel(), generator=ctx.generator)[: self.real_batch]]
            real = ctx.real_windows[pick.to(ctx.real_windows.device)]
            match, constraint = self.group_losses(ctx, encoder, expert, group, ctx.synthetic.windows(), real)
            loss = match + self.alpha_value * constraint
            n_g = self._syn_idx[group].numel()
            extra, terms = ctx.extra_loss(None)
            total = loss + loss.detach() * (n_g / s) * extra
            grads = torch.autograd.grad(total, params, allow_unused=True)
            lr = self.lr_per_sample * n_g
            with torch.no_grad():
                for p, grad, buf in zip(params, grads, self._buffers[group]):
                    if grad is not None:
                        buf.mul_(self.momentum).add_(grad)
                    else:
                        buf.mul_(self.momentum)
                    p.sub_(lr * buf)
            total_match += float(match.detach())
            total_constraint += float(constraint.detach())
        loss_sum = total_match + self.alpha_value * total_constraint
        return MethodOutput(loss=torch.tensor(loss_sum), stepped=True,
                            metrics={**terms, "matching": total_match, "constraint": total_constraint / self.k,
                                     "stage": float(j), "expert_stage": float(j2)})

    # checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"syn_groups": self.syn_groups.clone(), "centroids": self.centroids.clone()}
        for g, bufs in enumerate(self._buffers):
            for p, buf in enumerate(bufs):
                state[f"momentum.{g}.{p}"] = buf.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"TGDD.load_state_dict: expected keys {sorted(expected)}, got {sorted(state)}")
        if not torch.equal(state["syn_groups"], self.syn_groups):
            raise ValueError("TGDD.load_state_dict: the checkpoint's group assignment differs from this run's")
        self.centroids = state["centroids"].clone()
        for g, bufs in enumerate(self._buffers):
            for p, buf in enumerate(bufs):
                buf.copy_(state[f"momentum.{g}.{p}"].to(buf.device))
