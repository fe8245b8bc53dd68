"""Data efficiency: how much training data a G-CNN needs to match the z2 network's
full-data test error.

For each G-CNN (any group but z2) with mean test errors at several training-set
sizes, the size at which its error equals the z2 network's full-data mean error is
interpolated between the two sizes that bracket that error: linear in error, on a
log scale of size. The first crossing from the smallest size up counts. Sizes are
numbers of training images (the full set at its recorded ``n_train``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .values import is_missing

# Cells that share these are one data-efficiency curve family (one panel of the plot).
FAMILY_FIELDS = ("model", "data_label", "augment", "budget", "variant")


@dataclass(frozen=True)
class Crossing:
    """Where a curve reaches ``target``: ``kind`` is ``between`` (interpolated ``size``),
    ``at_smallest`` (already at or below it at the smallest size, ``size`` = that size)
    or ``not_reached`` (``size`` None)."""

    kind: str
    size: float | None


def crossing_size(sizes: Sequence[float], errors: Sequence[float], target: float) -> Crossing:
    """The training-set size at which the error curve first reaches ``target`` (see the
    module docstring). ``sizes`` must be positive; they are sorted here."""
    points = sorted(zip(sizes, errors))
    if not points:
        return Crossing("not_reached", None)
    if points[0][1] <= target:
        return Crossing("at_smallest", float(points[0][0]))
    for (s0, e0), (s1, e1) in zip(points, points[1:]):
        if e1 <= target:
            fraction = (e0 - target) / (e0 - e1)
            return Crossing("between", math.exp(math.log(s0) + fraction * (math.log(s1) - math.log(s0))))
    return Crossing("not_reached", None)


def _images(cell: pd.Series) -> float | None:
    """Training images of a cell: the recorded ``n_train``, else the subset size."""
    for key in ("n_train", "train_size"):
        if not is_missing(cell.get(key)):
            return float(cell[key])
    return None


def _describe(group: str, crossing: Crossing, full: float | None, curve: pd.DataFrame) -> str:
    """``p4 needs 0.30x the data (1500 of 5000 images)`` and the honest variants."""
    if crossing.kind == "not_reached":
        best = curve.loc[curve["test_error_mean"].idxmin()]
        return f"not reached (lowest {best['test_error_mean']:.2f}% at {_images(best):.0f} images)"
    bound = "≤ " if crossing.kind == "at_smallest" else ""
    fraction = f"{bound}{crossing.size / full:.2f}x the data" if full else "? of the data"
    of_full = f" of {full:.0f}" if full else ""
    note = "; already below at the smallest size tried" if crossing.kind == "at_smallest" else ""
    return f"{group} needs {fraction} ({bound}{crossing.size:.0f}{of_full} images{note})"


def _family_rows(family: pd.DataFrame) -> list[dict]:
    z2_full = family[(family["group"] == "z2") & family["train_size"].map(is_missing)]
    if len(z2_full) != 1:
        return []
    target, full = float(z2_full["test_error_mean"].iloc[0]), _images(z2_full.iloc[0])
    rows = []
    for group, curve in family[family["group"] != "z2"].groupby("group", sort=False):
        sizes = [_images(cell) for _, cell in curve.iterrows()]
        if len(curve) < 2 or any(s is None for s in sizes):
            continue
        crossing = crossing_size(sizes, list(curve["test_error_mean"]), target)
        first = curve.iloc[0]
        rows.append({**{key: first[key] for key in FAMILY_FIELDS}, "group": group,
                     "z2_full_error": target, "full_size": full, "sizes": ",".join(f"{s:.0f}" for s in sorted(sizes)),
                     "crossing": crossing.kind, "size_at_z2_full_error": crossing.size,
                     "fraction_of_full": crossing.size / full if crossing.size and full else math.nan,
                     "text": _describe(group, crossing, full, curve)})
    return rows


def data_efficiency(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per G-CNN curve (a group of one family at two or more sizes) whose family
    has a z2 cell on the full training set: the z2 full-data mean error, the interpolated
    size at which the G-CNN reaches it, that size as a fraction of the full set and a
    sentence saying so (``p4 needs 0.43x the data (2150 of 5000 images)``, ``not reached ...``)."""
    columns = [*FAMILY_FIELDS, "group", "z2_full_error", "full_size", "sizes", "crossing",
               "size_at_z2_full_error", "fraction_of_full", "text"]
    rows: list[dict] = []
    if not summary.empty:
        for _, family in summary.groupby(list(FAMILY_FIELDS), dropna=False, sort=False):
            rows += _family_rows(family)
    return pd.DataFrame(rows, columns=columns)
