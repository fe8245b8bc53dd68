"""A new report beside a committed record (``make demo`` beside ``results/demo/``): per cell, both mean
errors and whether they differ by no more than seed noise.

Seed noise: two means agree when ``|ours - record| <= NOISE_SIGMAS x pooled std``, the pooled std being
``sqrt((s_ours^2 + s_record^2) / 2)`` of the two sample stds over seeds. With one seed on either side there is
no std, and agreement is ``unknown``. Another CPU or library version changes the last digits, not this verdict.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

from repro.markdown import markdown_table

NOISE_SIGMAS = 2.0
# The columns of table.csv that name a cell; the budget and variant tell a changed recipe from the record's.
CELL_KEY = ("model", "data_label", "augment", "group", "train_size", "budget", "variant")


class Comparison(NamedTuple):
    """One cell in both tables: ``key`` values of :data:`CELL_KEY`, means and stds in %, ``within``: True,
    False, or None (unknown: a side has one seed)."""

    key: tuple[str, ...]
    ours: float
    record: float
    bound: float | None
    within: bool | None


def read_cells(folder: str | os.PathLike) -> dict[tuple[str, ...], dict[str, str]]:
    """The rows of ``folder/table.csv`` by :data:`CELL_KEY` (text as written); ValueError when it is absent."""
    path = Path(folder) / "table.csv"
    if not path.exists():
        raise ValueError(f"{path} does not exist; expected the table.csv of a report")
    with path.open(newline="", encoding="utf-8") as file:
        return {tuple(row[key] for key in CELL_KEY): row for row in csv.DictReader(file)}


def _std(row: dict[str, str]) -> float | None:
    return float(row["test_error_std"]) if row["test_error_std"] else None


def compare_cells(ours: dict, record: dict) -> list[Comparison]:
    """Every cell of ``ours`` that ``record`` also has (both from :func:`read_cells`), in ``ours``' order."""
    rows = []
    for key, row in ours.items():
        if key not in record:
            continue
        mean, recorded = float(row["test_error_mean"]), float(record[key]["test_error_mean"])
        stds = (_std(row), _std(record[key]))
        bound = None if None in stds else NOISE_SIGMAS * math.sqrt((stds[0] ** 2 + stds[1] ** 2) / 2)
        rows.append(Comparison(key, mean, recorded, bound, None if bound is None else abs(mean - recorded) <= bound))
    return rows


def comparison_text(rows: list[Comparison], record: str) -> str:
    """The table printed after ``make demo``: per cell ours, the record's, the difference and the verdict."""
    head = (f"Beside the committed record {record} (within seed noise: |difference| <= {NOISE_SIGMAS:g} x the "
            "pooled std over seeds):\n")
    if not rows:
        return head + "no cell in common (other sizes, budget or recipe than the record's).\n"
    verdict = {True: "yes", False: "NO", None: "unknown (one seed)"}
    table = [[*(key[CELL_KEY.index(k)] or "–" for k in ("model", "group")),
              key[CELL_KEY.index("train_size")] or "full", f"{row.ours:.2f}", f"{row.record:.2f}",
              f"{row.ours - row.record:+.2f}", "–" if row.bound is None else f"{row.bound:.2f}", verdict[row.within]]
             for row in rows for key in [row.key]]
    header = ["Network", "Group", "Train size", "Error (%)", "Record (%)", "Difference", "Noise bound", "Within noise"]
    summary = f"{sum(r.within is True for r in rows)} of {len(rows)} cells within seed noise.\n"
    return head + markdown_table(header, table, ["l", "l", "r", "r", "r", "r", "r", "l"]) + summary
