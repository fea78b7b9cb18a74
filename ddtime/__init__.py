"""ddtime: fused losses for dataset distillation in time-series forecasting.

``import ddtime`` loads only torch and the loss operators. The distillation driver lives in
submodules that are imported explicitly: ``ddtime.data``, ``ddtime.models``, ``ddtime.training``,
``ddtime.experts``, ``ddtime.distill``, ``ddtime.evaluate``, ``ddtime.classification``.
"""
from ddtime.functional import frequency_alignment_loss, isib_loss, pairwise_symmetric_kl, value_loss
from ddtime.modules import FrequencyAlignmentLoss, ISIBLoss, ValueLoss

__version__ = "0.1.0"

__all__ = [
    "frequency_alignment_loss",
    "value_loss",
    "pairwise_symmetric_kl",
    "isib_loss",
    "FrequencyAlignmentLoss",
    "ValueLoss",
    "ISIBLoss",
]
