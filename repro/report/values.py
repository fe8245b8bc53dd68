"""Missing values, sort order and grouping for the report; pandas turns None into NaN and
whole numbers into floats, and these helpers treat both as the values they stand for."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd


def is_missing(value: Any) -> bool:
    """None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def whole(value: Any) -> Any:
    """Whole numbers as int, missing as None, anything else unchanged."""
    if is_missing(value):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def as_object(column: pd.Series) -> pd.Series:
    """``column`` through :func:`whole`, kept as objects so pandas leaves the ints alone."""
    return pd.Series([whole(v) for v in column], index=column.index, dtype=object)


def rank(value: Any, preferred: Sequence = ()) -> tuple:
    """Sort key: ``preferred`` values in their order, then numbers, then text, then missing values."""
    if is_missing(value):
        return (2, 0.0, "")
    if value in preferred:
        return (-1, float(preferred.index(value)), "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def group_rows(table: pd.DataFrame, key: Sequence[str]) -> dict[tuple, pd.DataFrame]:
    """Rows of ``table`` grouped by the columns ``key`` in first-seen order, missing key values as None
    (pandas' groupby would drop them or tell NaN from None)."""
    positions: dict[tuple, list[int]] = {}
    for position, row in enumerate(table[list(key)].itertuples(index=False, name=None)):
        positions.setdefault(tuple(None if is_missing(v) else v for v in row), []).append(position)
    return {cell: table.iloc[rows] for cell, rows in positions.items()}


def bound_prefix(crossing: str) -> str:
    """``"≤ "`` for a data-efficiency crossing already below at the smallest size tried (the size is
    an upper bound), else ``""``."""
    return "≤ " if crossing == "at_smallest" else ""
