"""The paper's reported numbers, read from ``results/paper_reference.csv``.

The numbers live in that data file (with a ``source`` column citing where each
comes from), never in code. A reference row applies to runs of the same
network, group, data set and augmentation trained on the full training set; its
``preset`` (an ``experiment=`` name) is the recipe a run must match for the report to
print the difference (empty: the paper's number is shown, never a difference).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv"
REFERENCE_COLUMNS = ("network", "group", "dataset", "augment", "test_error", "params", "preset", "source")


def load_reference(path: str | os.PathLike = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The reference table: one row per (network, group, dataset, augment) with
    ``test_error`` (%), ``params`` (may be empty), ``preset`` (may be empty) and ``source``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"reference file {str(path)!r} does not exist; expected a CSV with columns "
                         f"{', '.join(REFERENCE_COLUMNS)}")
    table = pd.read_csv(path)
    missing = [column for column in REFERENCE_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"reference file {str(path)!r} lacks columns {missing}; "
                         f"expected {', '.join(REFERENCE_COLUMNS)}")
    key = ["network", "group", "dataset", "augment"]
    repeated = table[table.duplicated(key, keep=False)]
    if len(repeated):
        raise ValueError(f"reference file {str(path)!r} lists {repeated[key].iloc[0].tolist()} more than once")
    return table
