"""Train several models of one architecture in lockstep (``torch.func.vmap``): the expert recipe.

Experts are tiny (a DLinear has 1,200 parameters), so one optimiser step of one expert costs far
less than the Python and dispatch overhead around it. :func:`train_stacked` stacks G models'
parameters and takes every model's step in one vmapped call: model g sees exactly the batches
``train_model(..., seed=seeds[g])`` would give it (same shuffling generator, same grouping of
channel-independent rows), with SGD + momentum (PyTorch's semantics, no dampening), or SAM or
adaptive GSAM (:mod:`ddtime.driver.training.sam`) around it, at a constant rate and with no
early stopping. Results equal G separate ``train_model`` runs up to float rounding.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from ddtime.driver.training.sam import gsam_direction
from ddtime.driver.training.trainer import DEFAULT_GSAM_ALPHA, DEFAULT_RHO, window_row_groups

__all__ = ["train_stacked"]


def train_stacked(models: Sequence[nn.Module], data, *, seeds: Sequence[int], optimizer: str = "sgd", lr: float,
                  epochs: int, batch_size: int = 64, momentum: float = 0.9, rho: float | None = None,
                  gsam_alpha: float = DEFAULT_GSAM_ALPHA, device="cpu",
                  on_epoch_end: Callable[[int, list[torch.Tensor]], None] | None = None) -> list[list[float]]:
    """Train ``models`` (same architecture, own initial weights) in place on ``data.windows("train")``.

    Args:
        seeds: one per model: its shuffling order (as ``train_model``'s ``seed``).
        optimizer: ``"sgd"`` (momentum), ``"sam"`` (SAM radius ``rho`` around SGD + momentum) or
            ``"gsam"`` (adaptive GSAM, radius ``rho``, ``gsam_alpha``; CondTSF's FTD experts).
        rho: SAM / GSAM radius (None: ``DEFAULT_RHO`` of the optimizer).
        on_epoch_end: ``on_epoch_end(epoch, flats)`` after every epoch, ``flats[g]``: model g's flat
            parameters ``[P]`` (epoch counts from 1).
    Returns: per model, the mean training loss of every epoch.
    """
    if optimizer not in ("sgd", "sam", "gsam"):
        raise ValueError(f"optimizer: expected 'sgd', 'sam' or 'gsam' for stacked training, got {optimizer!r}")
    rho = DEFAULT_RHO.get(optimizer) if rho is None else rho
    if len(models) != len(seeds) or not models:
        raise ValueError(f"seeds: expected one seed per model ({len(models)}), got {len(seeds)}")
    device = torch.device(device)
    template = models[0].to(device)
    names = [name for name, _ in template.named_parameters()]
    params = {name: torch.stack([dict(m.named_parameters())[name].detach().to(device) for m in models])
              for name in names}
    buffers = {name: b.to(device) for name, b in template.named_buffers()}
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    seq_len = data.seq_len
    windows = data.windows("train").to(device, torch.float32)
    rows = window_row_groups(data, windows)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    rows_per_batch = batch_size * rows.shape[1]

    def loss_fn(p, x, y):
        return F.mse_loss(functional_call(template, {**p, **buffers}, (x,)), y)

    step_grad = vmap(grad_and_value(loss_fn), randomness="different")
    losses: list[list[float]] = [[] for _ in models]
    template.train()
    for epoch in range(1, epochs + 1):
        orders = torch.stack([rows[torch.randperm(rows.shape[0], generator=g)].flatten() for g in generators])
        totals = torch.zeros(len(models), dtype=torch.float64)
        for start in range(0, orders.shape[1], rows_per_batch):
            batch = windows[orders[:, start:start + rows_per_batch].to(device)]  # [G, B, N, L]
            x, y = batch[..., :seq_len], batch[..., seq_len:]
            grads, loss = step_grad(params, x, y)
            if optimizer in ("sam", "gsam"):
                grads = _sharpness_aware(step_grad, params, grads, x, y, rho=rho,
                                         gsam_alpha=gsam_alpha if optimizer == "gsam" else None)
            with torch.no_grad():
                for k, p in params.items():
                    v = velocity[k]
                    if epoch == 1 and start == 0:
                        v.copy_(grads[k])
                    else:
                        v.mul_(momentum).add_(grads[k])
                    p.sub_(lr * v)
            totals += loss.detach().double().cpu() * x.shape[1]
        for g in range(len(models)):
            losses[g].append(float(totals[g]) / orders.shape[1])
        if on_epoch_end is not None:
            on_epoch_end(epoch, [torch.cat([params[k][g].reshape(-1) for k in names]).cpu()
                                 for g in range(len(models))])
    with torch.no_grad():
        for g, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][g])
    return losses


def _sharpness_aware(step_grad, params: dict, grads: dict, x, y, *, rho: float, gsam_alpha: float | None) -> dict:
    """The SAM (``gsam_alpha`` None) or adaptive GSAM gradient of stacked models ``[G, ...]`` from their
    gradient ``grads`` at ``params``: the gradient at ``w + e(w)``, ``e(w) = rho g / ||g||`` (SAM) or
    ``rho w^2 g / || |w| g ||`` (GSAM, adaptive as CondTSF's), GSAM's :func:`gsam_direction` on top."""
    def per_model(t, ref):
        return t.view(-1, *[1] * (ref.dim() - 1))

    adaptive = gsam_alpha is not None
    weighted = {k: (params[k].abs() * g if adaptive else g) for k, g in grads.items()}
    norm = torch.sqrt(sum(w.flatten(1).pow(2).sum(1) for w in weighted.values()))  # [G]
    scale = rho / (norm + 1e-12)
    shifted = {k: p + (p.pow(2) if adaptive else 1.0) * grads[k] * per_model(scale, p) for k, p in params.items()}
    perturbed, _ = step_grad(shifted, x, y)
    if not adaptive:
        return perturbed
    names = list(params)
    flat = gsam_direction(torch.cat([grads[k].flatten(1) for k in names], 1),
                          torch.cat([perturbed[k].flatten(1) for k in names], 1), gsam_alpha)
    out, offset = {}, 0
    for k in names:
        size = params[k][0].numel()
        out[k] = flat[:, offset:offset + size].view_as(params[k])
        offset += size
    return out
