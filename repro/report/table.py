"""The report's numbers, per cell (runs whose identities differ in the seed alone) beside the paper's
(``results/paper_reference.csv``), and the convergence, data-efficiency and robustness summaries.
Errors are in %; ``std`` is the sample std over seeds (ddof 1; NaN when n = 1)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

import models
from gcnn import GROUP_NAMES
from repro.data.augment import AUGMENT_NAMES
from repro.train.measure import P4M_ELEMENT_NAMES

from .recipe import paper_match
from .values import bound_prefix, group_rows, is_missing, rank, records_frame

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv"
REFERENCE_COLUMNS = ("network", "group", "dataset", "augment", "test_error", "params", "preset", "source")
# Display fields of a cell (all runs of one recipe, i.e. one identity up to the seed).
CELL_FIELDS = ("data", "data_label", "data_format", "augment", "train_size", "model", "group", "epochs",
               "budget", "variant", "recipe")
# Rows and columns in the registries' order: groups, augmentations, then the model registry's networks.
PREFERRED_ORDER = {"model": tuple(models.list_models()), "augment": AUGMENT_NAMES, "group": GROUP_NAMES}
SUMMARY_COLUMNS = [*CELL_FIELDS, "n", "seeds", "n_train", "test_error_mean", "test_error_std",
                   "test_error_min", "test_error_max", "paper_test_error", "diff_vs_paper",
                   "paper_recipe_diff", "paper_recipe_keys", "params", "paper_params",
                   "equivariance_error_mean", "equivariance_group", "paper_source"]
SORT_FIELDS = ("data_label", "augment", "train_size", "model", "group", "budget", "variant")
# One convergence / robustness panel, and one data-efficiency curve family.
PANEL_FIELDS = ("model", "data_label", "augment", "train_size", "budget", "variant")
FAMILY_FIELDS = ("model", "data_label", "augment", "budget", "variant")
P4M_ELEMENTS = P4M_ELEMENT_NAMES  # the keys result.json records, index 4*m + r
KINDS = {"p4m": "p4m element", "rotation": "rotation (degrees)"}


def load_reference(path: str | os.PathLike = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The paper's numbers for runs on the full training set: one row per (network, group, dataset,
    augment) with ``test_error``, ``params``, ``preset`` (the ``experiment=`` a Δ needs) and ``source``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"reference file {str(path)!r} does not exist; expected a CSV with columns "
                         f"{', '.join(REFERENCE_COLUMNS)}")
    table = pd.read_csv(path, dtype={"params": "Int64"})
    missing = [column for column in REFERENCE_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"reference file {str(path)!r} lacks columns {missing}; "
                         f"expected {', '.join(REFERENCE_COLUMNS)}")
    key = ["network", "group", "dataset", "augment"]
    repeated = table[table.duplicated(key, keep=False)]
    if len(repeated):
        raise ValueError(f"reference file {str(path)!r} lists {repeated[key].iloc[0].tolist()} more than once")
    return table


def _unique(values: pd.Series) -> list:
    return list(dict.fromkeys(v for v in values if not is_missing(v)))


def _unique_counts(values: pd.Series) -> list[int]:
    """The distinct counts (params, images) of ``values``; runs.csv keeps them as pandas floats beside missing ones."""
    return list(dict.fromkeys(int(v) for v in values if not is_missing(v)))


def _summarize_cell(cell: pd.DataFrame, paper: dict) -> dict:
    errors = cell["final_test_error"].astype(float)
    first = cell.iloc[0]
    row = {key: first[key] for key in CELL_FIELDS}
    full_set = is_missing(row["train_size"])
    ref = paper.get((row["model"], row["group"], row["data"], row["augment"])) if full_set else None
    keys, described = (None, None) if ref is None else \
        paper_match(first["items"], ref.get("preset"), row["group"], row["augment"], row["data"])
    ref = ref or {"test_error": math.nan, "params": None, "source": None}
    params, n_train = _unique_counts(cell["params"]), _unique_counts(cell["n_train"])
    row.update(
        n=len(errors), seeds=",".join(str(s) for s in cell["seed"]), n_train=n_train[0] if len(n_train) == 1 else None,
        test_error_mean=errors.mean(), test_error_std=errors.std(), test_error_min=errors.min(),
        test_error_max=errors.max(), params=params[0] if len(params) == 1 else ("/".join(map(str, params)) or None),
        equivariance_error_mean=pd.to_numeric(cell["equivariance_error"], errors="coerce").mean(),
        equivariance_group=",".join(map(str, _unique(cell["equivariance_group"]))) or None,
        paper_test_error=ref["test_error"], paper_params=ref["params"], paper_source=ref["source"],
        paper_recipe_keys=keys, paper_recipe_diff=described,
        diff_vs_paper=errors.mean() - ref["test_error"] if keys == "" else math.nan)
    return row


def _sort_key(name: str, value: Any) -> tuple:
    if name == "budget":  # "30 epochs x 8 steps": by the rest of the text, then the number
        number, _, unit = str(value).partition(" ")
        return (unit, float(number)) if number.replace(".", "", 1).isdigit() else (unit, math.inf)
    return rank(value, PREFERRED_ORDER.get(name, ()))


def sort_cells(table: pd.DataFrame, columns: Sequence[str] = SORT_FIELDS) -> pd.DataFrame:
    """Rows in the paper's order (stable; :data:`PREFERRED_ORDER`), sizes ascending, the full set last."""
    if table.empty:
        return table
    keys = [tuple(_sort_key(name, value) for name, value in zip(columns, row))
            for row in table[list(columns)].itertuples(index=False, name=None)]
    return table.iloc[sorted(range(len(keys)), key=keys.__getitem__)].reset_index(drop=True)


def summarize(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell: ``n`` seeds, final test error mean / std / min / max, the paper's number where
    one applies, ``diff_vs_paper`` = ours - paper only when the recipe is the paper preset (else
    ``paper_recipe_keys`` names the keys that differ), params and the mean equivariance error."""
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    paper = {} if reference is None else {(row["network"], row["group"], row["dataset"], row["augment"]): row
                                          for row in reference.to_dict("records")}
    cells = [_summarize_cell(cell, paper) for _, cell in runs.groupby("recipe", sort=False)]
    return sort_cells(records_frame(cells, SUMMARY_COLUMNS, ("train_size", "epochs", "params", "paper_params",
                                                            "n_train")))


def _error_at(curve: pd.DataFrame, fraction: float) -> float:
    """Test error at the last evaluated epoch <= ``fraction`` of the run's length (NaN: none evaluated by then)."""
    cutoff = max(1, round(int(curve["epoch"].max()) * fraction))
    evaluated = curve[curve["epoch"] <= cutoff]["test_error"]
    return float(evaluated.iloc[-1]) if len(evaluated) else math.nan


def convergence_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per panel and group: mean test error over seeds at 25 %, 50 % and 100 % of training, and the
    first epoch at which the mean curve is at or below the z2 network's final mean error (``"never"``;
    None when the panel has no z2 runs)."""
    columns = [*PANEL_FIELDS, "group", "epochs", "error_at_25pct", "error_at_50pct", "error_final",
               "first_epoch_at_z2_final"]
    if curves.empty:
        return pd.DataFrame(columns=columns)
    fields = curves.drop_duplicates("recipe").set_index("recipe")[[*PANEL_FIELDS, "group"]]
    mean = curves.groupby(["recipe", "epoch"], sort=True)["test_error"].mean().reset_index().join(fields, on="recipe")
    rows = []
    for panel, panel_curves in group_rows(mean, PANEL_FIELDS).items():
        by_group = group_rows(panel_curves, ("group",))
        z2_final = by_group[("z2",)]["test_error"].iloc[-1] if ("z2",) in by_group else None
        for (group,), curve in sorted(by_group.items(), key=lambda item: rank(item[0][0], GROUP_NAMES)):
            reached = None
            if z2_final is not None:
                below = curve[curve["test_error"] <= z2_final + 1e-12]
                reached = int(below["epoch"].iloc[0]) if len(below) else "never"
            rows.append(dict(zip(columns, [*panel, group, int(curve["epoch"].max()), _error_at(curve, 0.25),
                                           _error_at(curve, 0.5), curve["test_error"].iloc[-1], reached])))
    summary = records_frame(rows, columns, ("train_size", "first_epoch_at_z2_final"))
    return sort_cells(summary, ("model", "data_label", "augment", "train_size", "budget", "variant", "group"))


class Crossing(NamedTuple):
    """Where an error curve reaches a target: ``between``, ``at_smallest`` or ``not_reached`` (``size`` None)."""

    kind: str
    size: float | None


def crossing_size(sizes: Sequence[float], errors: Sequence[float], target: float) -> Crossing:
    """The first training-set size, from the smallest up, at which the error reaches ``target``:
    interpolated between the two sizes that bracket it, linear in error, on a log scale of size."""
    points = sorted(zip(sizes, errors))
    if points and points[0][1] <= target:
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


def _efficiency_text(group: str, crossing: Crossing, full: float | None, curve: pd.DataFrame) -> str:
    """``p4 needs 0.30x the data (1500 of 5000 images)`` and the honest variants."""
    if crossing.kind == "not_reached":
        best = curve.loc[curve["test_error_mean"].idxmin()]
        return f"not reached (lowest {best['test_error_mean']:.2f}% at {_images(best):.0f} images)"
    bound = bound_prefix(crossing.kind)
    fraction = f"{bound}{crossing.size / full:.2f}x the data" if full else "? of the data"
    of_full = f" of {full:.0f}" if full else ""
    note = "; already below at the smallest size tried" if crossing.kind == "at_smallest" else ""
    return f"{group} needs {fraction} ({bound}{crossing.size:.0f}{of_full} images{note})"


def data_efficiency(summary: pd.DataFrame) -> pd.DataFrame:
    """Per G-CNN curve (two or more sizes) whose family has a full-data z2 cell: the size at which it
    reaches z2's full-data error (:func:`crossing_size`), as a fraction of the full set, and in words."""
    columns = [*FAMILY_FIELDS, "group", "z2_full_error", "full_size", "sizes", "crossing",
               "size_at_z2_full_error", "fraction_of_full", "text"]
    rows = []
    for _, family in summary.groupby(list(FAMILY_FIELDS), dropna=False, sort=False):
        z2_full = family[(family["group"] == "z2") & family["train_size"].map(is_missing)]
        if len(z2_full) != 1:
            continue
        target, full = float(z2_full["test_error_mean"].iloc[0]), _images(z2_full.iloc[0])
        for group, curve in family[family["group"] != "z2"].groupby("group", sort=False):
            sizes = [_images(cell) for _, cell in curve.iterrows()]
            if len(curve) < 2 or None in sizes:
                continue
            crossing = crossing_size(sizes, list(curve["test_error_mean"]), target)
            rows.append({**{key: curve.iloc[0][key] for key in FAMILY_FIELDS}, "group": group, "z2_full_error": target,
                         "full_size": full, "sizes": ",".join(f"{s:.0f}" for s in sorted(sizes)),
                         "crossing": crossing.kind, "size_at_z2_full_error": crossing.size,
                         "fraction_of_full": crossing.size / full if crossing.size and full else math.nan,
                         "text": _efficiency_text(group, crossing, full, curve)})
    return pd.DataFrame(rows, columns=columns)


def _transform_order(kind: str, name: str) -> float:
    if kind == "p4m":
        return float(P4M_ELEMENTS.index(name)) if name in P4M_ELEMENTS else math.inf
    try:
        return float(name)
    except ValueError:
        return math.inf


def robustness_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, kind, transformation) of ``result.json["robustness"]`` (the error per p4m element
    and, for digits, per 15-degree rotation), with ``order`` = position on the x axis."""
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
    return records_frame(rows, [*CELL_FIELDS, "path", "seed", "kind", "transform", "order", "test_error"],
                         ("train_size",))


def robustness_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per cell, kind and transformation of a :func:`robustness_runs` table: ``n``, ``mean``, ``std``, ``min``
    and ``max`` over seeds."""
    columns = [*CELL_FIELDS, "kind", "transform", "order", "n", "mean", "std", "min", "max"]
    if long.empty:
        return pd.DataFrame(columns=columns)
    stats = long.groupby(["recipe", "kind", "transform", "order"])["test_error"] \
        .agg(n="count", mean="mean", std="std", min="min", max="max").reset_index()
    fields = long.drop_duplicates("recipe").set_index("recipe")[[f for f in CELL_FIELDS if f != "recipe"]]
    table = stats.join(fields, on="recipe")[columns].sort_values(["kind", "order"], kind="stable")
    return sort_cells(table.reset_index(drop=True))
