"""Dataset distillation for forecasting: synthetic sets, base methods, CondTSF, DDTime terms.

``distill(data, DistillConfig(...), experts=...)`` runs one distillation; see
:mod:`ddtime.distill.loop` for the loop and :mod:`ddtime.distill.methods.base` for the method
interface. Imported explicitly (``import ddtime.distill``), not by ``import ddtime``.
"""
from ddtime.distill.checkpoint import load_synthetic, save_synthetic
from ddtime.distill.command import configure_parser, run
from ddtime.distill.ddtime_terms import DDTimeTerms
from ddtime.distill.loop import DistillConfig, DistillResult, distill
from ddtime.distill.methods import METHODS, DistillContext, DistillMethod, MethodOutput, build_method, register_method
from ddtime.distill.synthetic import SyntheticSet

__all__ = [
    "distill", "DistillConfig", "DistillResult", "SyntheticSet", "DDTimeTerms", "METHODS", "DistillContext",
    "DistillMethod", "MethodOutput", "build_method", "register_method", "save_synthetic", "load_synthetic",
    "configure_parser", "run",
]
