"""Argument checks shared by the library, the model registry and the experiment configs.

Every check raises :class:`ValueError` with one line of the form
``<name>=<value> is not valid; expected <what>``, so a bad value is named together
with what would have been accepted.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, TypeVar

__all__ = ["check_choice", "check_int", "check_number", "invalid"]

T = TypeVar("T")


def invalid(name: str, value: Any, expected: str) -> ValueError:
    """The error for a bad value: ``ValueError("<name>=<value!r> is not valid; expected <expected>")``."""
    return ValueError(f"{name}={value!r} is not valid; expected {expected}")


def check_choice(name: str, value: T, choices: Iterable[Any]) -> T:
    """``value`` if it is one of ``choices`` (same type too: ``True`` is not ``1``)."""
    choices = list(choices)
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise invalid(name, value, f"one of {choices}")
    return value


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` if it is an ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid(name, value, f"an integer >= {minimum}")
    return value


def check_number(name: str, value: Any, minimum: float = 0.0, *, strict: bool = False,
                 below: float | None = None) -> float:
    """``value`` if it is a finite real number ``>= minimum`` (``> minimum`` when ``strict``)
    and, when ``below`` is given, ``< below``."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > minimum if strict else value >= minimum) and (below is None or value < below))
    if not ok:
        bound = f"a number {'>' if strict else '>='} {minimum:g}"
        raise invalid(name, value, bound + (f" and < {below:g}" if below is not None else ""))
    return value
