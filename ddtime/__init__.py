"""ddtime: fused losses for dataset distillation in time-series forecasting.

Two layers. The loss library is this package's top level: :mod:`ddtime.functional` (the losses),
:mod:`ddtime.nn` (their modules), :mod:`ddtime.reference` (plain-PyTorch twins), ``ddtime._ops``
(the compiled operators' registration), ``ddtime._validation`` and :mod:`ddtime.info`;
``import ddtime`` loads only torch and these. The distillation driver is :mod:`ddtime.driver`
(data, models, training, experts, distillation, evaluation, command line), imported explicitly;
the loss library never imports it.
"""
from ddtime.functional import frequency_alignment_loss, isib_loss, pairwise_symmetric_kl, value_loss
from ddtime.nn import FrequencyAlignmentLoss, ISIBLoss, ValueLoss

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
