"""Distribution-matching terms shared by DM and TGDD, for forecasting windows and for classification.

- ``mean_embedding_distance``: ``|| mean_i phi(x_real_i) - mean_j phi(x_syn_j) ||_2^2``, the squared
  Euclidean distance of the mean feature vectors (summed over feature dimensions, not averaged).
- ``default_alpha``: TGDD's constraint weight by the size of a class (or group) of synthetic samples.
"""
from __future__ import annotations

import torch

__all__ = ["mean_embedding_distance", "default_alpha", "SMALL_SET_MAX"]

#: Synthetic sets with at most this many samples per class (or group) count as "small" (alpha 2.5).
SMALL_SET_MAX = 10


def default_alpha(per_class: int) -> float:
    """TGDD's constraint weight: 2.5 for small sets (``per_class <= SMALL_SET_MAX``), else 0.5."""
    return 2.5 if per_class <= SMALL_SET_MAX else 0.5


def mean_embedding_distance(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """``|| real.mean(0) - syn.mean(0) ||^2``; real: ``(B, F)``, syn: ``(S, F)`` -> 0-dim."""
    if real.dim() != 2 or syn.dim() != 2 or real.shape[1] != syn.shape[1]:
        raise ValueError(f"real, syn: expected (B, F) and (S, F) features with the same F, "
                         f"got {tuple(real.shape)} and {tuple(syn.shape)}")
    if real.shape[0] == 0 or syn.shape[0] == 0:
        raise ValueError("real, syn: expected at least one sample each")
    return (real.mean(0) - syn.mean(0)).pow(2).sum()
