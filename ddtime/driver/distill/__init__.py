"""Dataset distillation for forecasting: the loop, synthetic sets, base methods, CondTSF, DDTime terms.

``distill(data, DistillConfig(...), experts=...)`` runs one distillation. Modules: :mod:`.config`
(the run's settings), :mod:`.loop` (the shared loop and its checkpoints), :mod:`.synthetic` (the
learnable set), :mod:`.methods` (one module per base method, over :mod:`.methods.base`),
:mod:`.condtsf` (CondTSF's value update), :mod:`.terms` (DDTime's terms), :mod:`.teacher`,
:mod:`.matching` (distribution-matching terms), :mod:`.checkpoint` (files), :mod:`.plots`.
"""
from ddtime.driver.distill.checkpoint import load_synthetic, save_synthetic
from ddtime.driver.distill.condtsf import CondTSFUpdate
from ddtime.driver.distill.config import TERM_BALANCES, DistillConfig
from ddtime.driver.distill.loop import DistillResult, DistillRun, distill
from ddtime.driver.distill.methods import (METHODS, DistillContext, DistillMethod, MethodOutput, build_method,
                                           register_method)
from ddtime.driver.distill.synthetic import SyntheticSet
from ddtime.driver.distill.terms import DDTimeTerms

__all__ = [
    "distill", "DistillConfig", "DistillResult", "DistillRun", "SyntheticSet", "DDTimeTerms", "CondTSFUpdate",
    "TERM_BALANCES", "METHODS", "DistillContext", "DistillMethod", "MethodOutput", "build_method",
    "register_method", "save_synthetic", "load_synthetic",
]
