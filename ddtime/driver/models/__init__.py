"""Forecasting backbones and their registry.

Every model maps ``x: (batch, channels, seq_len)`` to ``(batch, channels, pred_len)`` and has
``embed(x) -> (batch, dim)``. Build one by name with :func:`build_model`; run it with an explicit
parameter vector with :func:`functional_forward`.
"""
import inspect

import torch

from ddtime.driver.checks import check_int
from ddtime.driver.models.base import ForecastModel
from ddtime.driver.models.cnn import CNN
from ddtime.driver.models.itransformer import ITransformer
from ddtime.driver.models.linear import DLinear, Linear, NLinear
from ddtime.driver.models.lstm import LSTM
from ddtime.driver.models.mlp import MLP
from ddtime.driver.models.params import (
    assign_flat_params,
    flat_params,
    functional_forward,
    num_params,
    param_spec,
    unflatten_params,
)
from ddtime.driver.models.patchtst import PatchTST
from ddtime.driver.models.rlinear import RLinear

MODELS: dict[str, type] = {
    "linear": Linear,
    "nlinear": NLinear,
    "dlinear": DLinear,
    "rlinear": RLinear,
    "mlp": MLP,
    "cnn": CNN,
    "lstm": LSTM,
    "patchtst": PatchTST,
    "itransformer": ITransformer,
}


def model_options(name: str) -> dict[str, object]:
    """The keyword options of model ``name`` and their defaults."""
    cls = _model_class(name)
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _model_class(name) -> type:
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (str), got {type(name).__name__}")
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[key]


def build_model(name: str, *, seq_len: int, pred_len: int, channels: int, seed: int | None = None, **kwargs):
    """Build model ``name`` (case-insensitive key of :data:`MODELS`) for the given lengths.

    ``seed`` makes the initialisation reproducible without touching the global RNG state;
    ``kwargs`` are the model's own options (see :func:`model_options`).
    """
    cls = _model_class(name)
    for arg, value in (("seq_len", seq_len), ("pred_len", pred_len), ("channels", channels)):
        check_int(arg, value)
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; accepted: {', '.join(options) or 'none'}"
        )
    if seed is None:
        return cls(seq_len, pred_len, channels, **kwargs)
    check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(seq_len, pred_len, channels, **kwargs)


__all__ = [
    "MODELS",
    "ForecastModel",
    "build_model",
    "model_options",
    "Linear",
    "NLinear",
    "DLinear",
    "RLinear",
    "MLP",
    "CNN",
    "LSTM",
    "PatchTST",
    "ITransformer",
    "flat_params",
    "param_spec",
    "num_params",
    "unflatten_params",
    "assign_flat_params",
    "functional_forward",
]
