"""Class-conditional loss terms of DM and TGDD (the distance itself is the forecasting methods',
:func:`ddtime.driver.distill.matching.mean_embedding_distance`).

- Distribution matching (DM, and TGDD's stage-wise matching): for an encoder phi and a class c,
  the mean-embedding distance of the class's real and synthetic samples.
- TGDD's distribution constraint: the cross-entropy of the expert snapshot j' on the synthetic
  samples of class c, ``mean_j CE(f_j'(x_syn_j), c)``.
- TGDD's per-class objective: ``matching + alpha * constraint`` (the distillation loop passes
  alpha already rescaled to the encoder's feature width, see :mod:`ddtime.driver.classification.distill`).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ddtime.driver.distill.matching import mean_embedding_distance

__all__ = ["classwise_matching_loss", "constraint_cross_entropy", "tgdd_class_loss"]

def classwise_matching_loss(real: torch.Tensor, real_y: torch.Tensor, syn: torch.Tensor, syn_y: torch.Tensor,
                            num_classes: int) -> torch.Tensor:
    """DM's loss: sum over the classes present in both sets of :func:`mean_embedding_distance`.

    real: ``(B, F)`` with labels ``real_y (B,)``; syn: ``(S, F)`` with ``syn_y (S,)`` -> 0-dim.
    """
    total = real.new_zeros(())
    for c in range(num_classes):
        r, s = real[real_y == c], syn[syn_y == c]
        if r.shape[0] and s.shape[0]:
            total = total + mean_embedding_distance(r, s)
    return total


def constraint_cross_entropy(logits: torch.Tensor, label: int | torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (S, K)`` against one class index (or labels ``(S,)``) -> 0-dim."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected (S, K), got shape {tuple(logits.shape)}")
    if not isinstance(label, torch.Tensor):
        label = torch.full((logits.shape[0],), int(label), dtype=torch.int64, device=logits.device)
    return F.cross_entropy(logits, label)


def tgdd_class_loss(real_features: torch.Tensor, syn_features: torch.Tensor, expert_logits: torch.Tensor,
                    label: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TGDD's loss for one class: returns ``(total, matching, constraint)``, each 0-dim.

    real_features ``(B, F)`` and syn_features ``(S, F)`` come from the stage-j encoder;
    expert_logits ``(S, K)`` from the expert snapshot j' on the same synthetic samples.
    """
    match = mean_embedding_distance(real_features, syn_features)
    constraint = constraint_cross_entropy(expert_logits, label)
    return match + alpha * constraint, match, constraint
