"""Argument checks shared by every layer: one positive-integer check, one range check, one choice check.

Each raises a ValueError that names the field, the value and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_int", "check_positive_int", "check_range", "check_choice"]


def check_int(name: str, value: Any, minimum: int = 1, exact: bool = False) -> int:
    """`value` as an int if it is an integer >= `minimum` (bools refused; floats such as 3.0 accepted unless
    `exact`, for fields that are used as they are), else a ValueError naming `name`."""
    types = int if exact else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, types) and int(value) == value
    if not ok or value < minimum:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, exact: bool = False) -> int:
    """`value` as an int if it is an integer >= 1 (see check_int)."""
    return check_int(name, value, 1, exact)


def check_range(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    """lo <= value <= hi (lo < value with `lo_open`); NaN is refused."""
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok or (isinstance(value, float) and math.isnan(value)):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name}={value!r} must be in {bracket}{lo}, {hi}]")


def check_choice(name: str, value: Any, allowed: Any) -> None:
    """value in `allowed` (a tuple or a registry dict)."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")
