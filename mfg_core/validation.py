"""Checks of scalar arguments, shared by every constructor and solve: a ``ValueError`` naming the
parameter, never a silent conversion (no strings, no booleans for numbers, no truncated floats)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def number(name: str, value: Any, *, finite: bool = True) -> float:
    """A real number (not a bool, string or complex), finite unless ``finite=False``; never NaN."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (finite and not math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    v = number(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def in_range(name: str, value: Any, low: float, high: float, *, closed_low: bool = False,
             closed_high: bool = True) -> float:
    """A finite number in the interval from ``low`` to ``high`` (open or closed ends)."""
    v = number(name, value)
    ok_low = v >= low if closed_low else v > low
    ok_high = v <= high if closed_high else v < high
    if not (ok_low and ok_high):
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def integer(name: str, value: Any, low: int, *, integral_floats: bool = False) -> int:
    """An integer >= ``low``; a float with an integer value only if ``integral_floats``."""
    if integral_floats and isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
