"""The driver's argument checks, with one wording: ``name: expected <what>, got <value>``.

A value of the wrong type raises ``TypeError`` (a bool where a number is expected included:
``syn_steps=True`` is refused); a value of the right type outside its range raises ``ValueError``.

>>> check_int("syn_steps", 20)
20
>>> check_int("syn_steps", True)
Traceback (most recent call last):
TypeError: syn_steps: expected an int, got bool True
>>> check_number("lr", 0.0, positive=True)
Traceback (most recent call last):
ValueError: lr: expected a positive number, got 0.0
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Collection

__all__ = ["check_int", "check_number", "check_choice"]


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (``None`` passes when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int{' or None' if optional else ''}, got {_got(value)}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected an int {bound}, got {value!r}")
    return value


def check_number(name: str, value: Any, *, positive: bool = False, minimum: float | None = None,
                 maximum: float | None = None, below: float | None = None, optional: bool = False) -> float | None:
    """``value`` as a finite float: ``> 0`` when ``positive``, ``>= minimum``, ``<= maximum``,
    ``< below`` (each bound when given; ``None`` passes when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number{' or None' if optional else ''}, got {_got(value)}")
    bounds = (["positive"] if positive else []) + ([f">= {minimum}"] if minimum is not None else []) \
        + ([f"<= {maximum}"] if maximum is not None else []) + ([f"< {below}"] if below is not None else [])
    ok = (math.isfinite(value) and not (positive and value <= 0) and not (minimum is not None and value < minimum)
          and not (maximum is not None and value > maximum) and not (below is not None and value >= below))
    if not ok:
        what = "a positive number" if bounds == ["positive"] else "a finite number" + (
            " " + ", ".join(bounds) if bounds else "")
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value
