"""TGDD's distribution constraint: the cross-entropy of the expert snapshot j' on the synthetic samples
of class c, ``mean_j CE(f_j'(x_syn_j), c)``.

The loop (:mod:`ddtime.driver.classification.distill`) adds it, weighted by alpha rescaled to the
encoder's feature width, to the class's mean-embedding distance under the stage-j encoder
(:func:`ddtime.driver.distill.matching.mean_embedding_distance`, DM's whole loss).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["constraint_cross_entropy"]


def constraint_cross_entropy(logits: torch.Tensor, label: int | torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (S, K)`` against one class index (or labels ``(S,)``) -> 0-dim."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected (S, K), got shape {tuple(logits.shape)}")
    if not isinstance(label, torch.Tensor):
        label = torch.full((logits.shape[0],), int(label), dtype=torch.int64, device=logits.device)
    return F.cross_entropy(logits, label)
