"""Robustness: test error of the final models on transformed test sets.

``result.json["robustness"]`` holds, per run, the test error (%) on the test set
transformed by each of the 8 elements of p4m (``p4m``: ``e, r, r2, r3, m, mr, mr2,
mr3``, index 4*m + r) and, for digits data, rotated every 15 degrees
(``rotation``: ``"0"`` ... ``"345"``). This module lays them out per cell (runs that
differ only in the seed): mean, sample std, min and max over seeds.
"""
from __future__ import annotations

import math

import pandas as pd

from .table import CELL_FIELDS, sort_cells
from .values import as_object

P4M_ELEMENTS = ("e", "r", "r2", "r3", "m", "mr", "mr2", "mr3")
KINDS = {"p4m": "p4m element", "rotation": "rotation (degrees)"}


def _transform_order(kind: str, name: str) -> float:
    if kind == "p4m":
        return float(P4M_ELEMENTS.index(name)) if name in P4M_ELEMENTS else math.inf
    try:
        return float(name)
    except ValueError:
        return math.inf


def robustness_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, kind, transformation): the cell fields, ``path``, ``seed``,
    ``kind`` (``p4m`` or ``rotation``), ``transform``, ``order`` (position on the x axis)
    and ``test_error`` (%). Runs without robustness numbers contribute nothing."""
    rows = []
    for run in runs.to_dict("records"):
        measured = run.get("robustness") if isinstance(run.get("robustness"), dict) else {}
        for kind, errors in measured.items():
            for name, error in errors.items() if isinstance(errors, dict) else ():
                if isinstance(error, bool) or not isinstance(error, (int, float)):
                    continue  # not measured
                rows.append({**{key: run[key] for key in CELL_FIELDS}, "path": run["path"], "seed": run["seed"],
                             "kind": kind, "transform": str(name), "order": _transform_order(kind, str(name)),
                             "test_error": float(error)})
    frame = pd.DataFrame(rows, columns=[*CELL_FIELDS, "path", "seed", "kind", "transform", "order", "test_error"])
    frame["train_size"] = as_object(frame["train_size"])  # 100, not 100.0, beside full-set (None) runs
    return frame


def robustness_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell, kind and transformation: ``n``, ``mean``, ``std`` (ddof 1; NaN when n = 1),
    ``min`` and ``max`` of the test error (%) over seeds, in the table's row order."""
    long = robustness_runs(runs)
    columns = [*CELL_FIELDS, "kind", "transform", "order", "n", "mean", "std", "min", "max"]
    if long.empty:
        return pd.DataFrame(columns=columns)
    stats = long.groupby(["recipe", "kind", "transform", "order"])["test_error"] \
        .agg(n="count", mean="mean", std=lambda e: e.std(ddof=1) if len(e) > 1 else math.nan,
             min="min", max="max").reset_index()
    fields = long.drop_duplicates("recipe").set_index("recipe")[[f for f in CELL_FIELDS if f != "recipe"]]
    table = stats.join(fields, on="recipe")[columns].sort_values(["kind", "order"], kind="stable")
    return sort_cells(table.reset_index(drop=True))  # stable: cells in the table's order
