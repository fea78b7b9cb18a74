"""argparse value types shared by the command modules: a bad value stops with an error naming the option."""
from __future__ import annotations

import argparse
import ast
import math
from typing import Any

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction", "method_option",
           "model_list"]


def _argument_type(parse, valid, expected: str):
    """An argparse ``type=`` converter: ``parse`` the text, reject values failing ``valid``."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _argument_type(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _argument_type(float, lambda v: 0 < v < math.inf, "a positive number")
non_negative_float = _argument_type(float, lambda v: 0 <= v < math.inf, "a non-negative number")
fraction = _argument_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def method_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE a Python literal (``syn_steps=10``, ``network='random'``) or a bare word."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def model_list(text: str) -> tuple[str, ...]:
    """Comma-separated model names of :data:`ddtime.driver.models.MODELS` (lower-cased; empty -> ``()``)."""
    from ddtime.driver.models import MODELS

    models = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; expected names from {sorted(MODELS)}")
    return models
