"""Missing values, sort order and grouping for the report. Columns that mix whole numbers with missing
values are built from the rows' Python values (:func:`records_frame`), so 100 stays 100 and None stays None;
the computed numbers are floats, missing as NaN."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd


def is_missing(value: Any) -> bool:
    """None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def records_frame(rows: Sequence[dict], columns: Sequence[str], as_given: Sequence[str]) -> pd.DataFrame:
    """``pd.DataFrame(rows)`` whose ``as_given`` columns hold the rows' own Python values (object dtype): pandas
    would turn a column of ints and None into floats and NaN."""
    frame = pd.DataFrame(list(rows), columns=list(columns))
    for column in as_given:
        frame[column] = pd.Series([row.get(column) for row in rows], index=frame.index, dtype=object)
    return frame


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
