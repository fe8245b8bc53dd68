"""Aggregate finished runs over seeds and lay the numbers out like the paper's table.

:func:`summarize` gives a tidy table (one row per network x group x data x
augmentation x training-set size x epochs); :func:`wide_sections` turns it into
the paper's layout (rows network/group, one column block per data set and
augmentation, the paper's number and the difference beside ours), which
:mod:`repro.report.render` writes as Markdown and LaTeX.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .recipe import format_value, paper_difference, short_difference

__all__ = [
    "CELL_FIELDS", "GROUP_ORDER", "NETWORK_NAMES", "Section",
    "summarize", "sort_cells", "convergence_summary", "wide_sections", "column_label", "network_name",
    "format_error", "format_params", "format_number", "format_diff", "format_small", "paper_delta_text",
]

# Display fields of a cell (all runs of one recipe, i.e. one identity up to the seed).
CELL_FIELDS = ("data", "data_label", "data_format", "augment", "train_size", "model", "group", "epochs",
               "budget", "variant", "recipe")
GROUP_ORDER = ("z2", "p4", "p4m")
MODEL_ORDER = ("allcnnc", "resnet44", "resnet26", "rotmnist")
AUGMENT_ORDER = ("none", "crop_flip", "rot_flip")
NETWORK_NAMES = {"allcnnc": "All-CNN-C", "resnet44": "ResNet44", "resnet26": "ResNet26",
                 "rotmnist": "RotMNIST-CNN"}
SUMMARY_COLUMNS = [*CELL_FIELDS, "n", "seeds", "n_train", "test_error_mean", "test_error_std",
                   "test_error_min", "test_error_max", "paper_test_error", "diff_vs_paper",
                   "paper_recipe_diff", "paper_recipe_keys", "params", "paper_params",
                   "equivariance_error_mean", "equivariance_group", "paper_source"]
SORT_FIELDS = ("data_label", "augment", "train_size", "model", "group", "budget", "variant")


def network_name(model: Any) -> str:
    """Display name of a model registry name (unknown names unchanged)."""
    return NETWORK_NAMES.get(model, str(model))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _order(value: Any, preferred: tuple) -> tuple:
    """Sort key: preferred names in their order, then others by name, missing last."""
    if _is_missing(value):
        return (2, 0, "")
    if value in preferred:
        return (0, preferred.index(value), "")
    return (1, 0, str(value))


def _size_order(value: Any) -> tuple:
    return (1, 0) if _is_missing(value) else (0, float(value))


def _cells(table: pd.DataFrame, key: tuple[str, ...]) -> dict[tuple, pd.DataFrame]:
    """Group rows by ``key`` (None-safe, first-seen order)."""
    keys = [tuple(None if _is_missing(v) else v for v in row)
            for row in table[list(key)].itertuples(index=False, name=None)]
    groups: dict[tuple, list[int]] = {}
    for position, cell in enumerate(keys):
        groups.setdefault(cell, []).append(position)
    return {cell: table.iloc[positions] for cell, positions in groups.items()}


def _unique(values: pd.Series) -> list:
    return list(dict.fromkeys(v for v in values if not _is_missing(v)))


def _reference_lookup(reference: pd.DataFrame | None) -> dict[tuple, dict]:
    if reference is None:
        return {}
    return {(row["network"], row["group"], row["dataset"], row["augment"]): row
            for row in reference.to_dict("records")}


def _paper_match(row: dict, items: dict, ref: dict) -> tuple[str, str]:
    """``(keys, described)``: where the cell's recipe differs from the paper preset
    (both empty when it matches)."""
    preset = ref.get("preset")
    if _is_missing(preset) or not preset:
        return "(no paper preset)", "the reference row names no preset"
    try:
        differences = paper_difference(items, preset, row["group"], row["augment"], row["data"])
    except ValueError as err:
        return "(preset unavailable)", str(err)
    described = "; ".join(f"{key}={format_value(ours)} (paper {format_value(theirs)})"
                          for key, (ours, theirs) in differences.items())
    return ", ".join(differences), described


def _summarize_cell(cell: pd.DataFrame, paper: dict) -> dict:
    errors = cell["final_test_error"].astype(float)
    first = cell.iloc[0]
    row = {key: first[key] for key in CELL_FIELDS}
    params = _unique(cell["params"])
    equivariance = pd.to_numeric(cell["equivariance_error"], errors="coerce")
    ref = paper.get((row["model"], row["group"], row["data"], row["augment"])) \
        if _is_missing(row["train_size"]) else None
    keys, described = _paper_match(row, first["items"], ref) if ref is not None else (None, None)
    n_train = _unique(cell["n_train"])
    row.update(
        n=len(errors), seeds=",".join(str(s) for s in cell["seed"]),
        n_train=n_train[0] if len(n_train) == 1 else None,
        test_error_mean=errors.mean(), test_error_std=errors.std(ddof=1) if len(errors) > 1 else math.nan,
        test_error_min=errors.min(), test_error_max=errors.max(),
        params=params[0] if len(params) == 1 else ("/".join(map(str, params)) or None),
        equivariance_error_mean=equivariance.mean(),
        equivariance_group=",".join(map(str, _unique(cell["equivariance_group"]))) or None,
        paper_test_error=ref["test_error"] if ref is not None else math.nan,
        paper_params=ref["params"] if ref is not None else math.nan,
        paper_source=ref["source"] if ref is not None else None,
        paper_recipe_keys=keys, paper_recipe_diff=described,
    )
    matches = ref is not None and keys == ""
    row["diff_vs_paper"] = row["test_error_mean"] - row["paper_test_error"] if matches else math.nan
    return row


def _budget_order(value: Any) -> tuple:
    number, _, unit = str(value).partition(" ")
    return (unit, float(number)) if number.replace(".", "", 1).isdigit() else (unit, math.inf)


_SORT_KEYS = {"data": lambda v: (0, 0, str(v)), "data_label": lambda v: (0, 0, str(v)),
              "model": lambda v: _order(v, MODEL_ORDER), "augment": lambda v: _order(v, AUGMENT_ORDER),
              "train_size": _size_order, "group": lambda v: _order(v, GROUP_ORDER), "epochs": _size_order,
              "seed": _size_order, "path": lambda v: (0, 0, str(v)), "budget": _budget_order,
              "variant": lambda v: (0, 0, "") if _is_missing(v) else (0, 1, str(v))}


def sort_cells(table: pd.DataFrame, columns: tuple[str, ...] = SORT_FIELDS) -> pd.DataFrame:
    """Rows in the paper's order: data, then augmentation (none, crop_flip, rot_flip),
    training-set size (full last), network (All-CNN-C, ResNet44, ...), group (z2, p4,
    p4m), budget, and the most common recipe before its variants."""
    if table.empty:
        return table
    rows = table[list(columns)].itertuples(index=False, name=None)
    keys = [tuple(_SORT_KEYS[name](value) for name, value in zip(columns, row)) for row in rows]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return table.iloc[order].reset_index(drop=True)


def _as_object(column: pd.Series) -> pd.Series:
    """Whole numbers as int and missing values as None (pandas would turn them into NaN floats)."""
    values = [None if _is_missing(v) else int(v) if isinstance(v, float) and v.is_integer() else v
              for v in column]
    return pd.Series(values, index=column.index, dtype=object)


def summarize(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell (runs whose identities differ in the seed alone): ``n`` seeds,
    final test error mean / sample std (ddof 1; NaN when n = 1) / min / max in %, the
    paper's number where one applies (same network, group, data set and augmentation,
    full training set), ``diff_vs_paper`` = ours - paper only when the cell's recipe is
    the paper preset (else ``paper_recipe_keys`` names the keys that differ), params and
    the mean equivariance error."""
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    paper = _reference_lookup(reference)
    rows = [_summarize_cell(cell, paper) for _, cell in runs.groupby("recipe", sort=False)]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for column in ("train_size", "epochs", "params", "paper_params", "n_train"):
        summary[column] = _as_object(summary[column])
    return sort_cells(summary)


def column_label(data: str, augment: str, train_size: Any = None, show_size: bool = False) -> str:
    """``CIFAR10`` (no augmentation), ``CIFAR10+`` (crop_flip), ``CIFAR10 rot_flip``,
    ``digits_rot``; with ``show_size``: ``digits_rot, 100 train`` or ``, full``."""
    base = str(data).upper() if str(data).startswith("cifar") else str(data)
    if augment == "crop_flip":
        base += "+"
    elif augment not in ("none", None):
        base += f" {augment}"
    if show_size:
        base += ", full" if _is_missing(train_size) else f", {int(train_size)} train"
    return base


def format_error(mean: float, std: float, n: int) -> str:
    """``9.44 ± 0.12 (n=3)``; without the std when n = 1."""
    if _is_missing(mean):
        return "–"
    spread = "" if _is_missing(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} (n={n})"


def format_params(params: Any) -> str:
    """``1.37M``, ``52.3k``, or the raw text for mixed values."""
    if _is_missing(params):
        return "–"
    if isinstance(params, str):
        return params
    params = float(params)
    if params >= 1e6:
        return f"{params / 1e6:.2f}M"
    return f"{params / 1e3:.1f}k" if params >= 1e3 else f"{params:.0f}"


def format_number(value: float) -> str:
    return "–" if _is_missing(value) else f"{value:.2f}"


def format_diff(diff: float) -> str:
    return "–" if _is_missing(diff) else f"{diff:+.2f}"


def format_small(value: float) -> str:
    """Equivariance errors and similar: two significant digits in scientific notation."""
    return "–" if _is_missing(value) else f"{value:.1e}"


@dataclass
class Section:
    """One data set's table in the paper's layout: ``header`` and ``rows`` of display strings."""

    data: str
    header: list[str]
    rows: list[list[str]]
    sizes: list


def _conditions(section: pd.DataFrame) -> list[tuple]:
    pairs = list(dict.fromkeys((a, None if _is_missing(t) else t)
                               for a, t in zip(section["augment"], section["train_size"])))
    return sorted(pairs, key=lambda p: (_order(p[0], AUGMENT_ORDER), _size_order(p[1])))


ROW_FIELDS = ("model", "group", "budget", "variant")


def _section(data: str, section: pd.DataFrame) -> Section:
    conditions = _conditions(section)
    sizes = list(dict.fromkeys(None if _is_missing(s) else s for s in section["train_size"]))
    show_size = any(not _is_missing(s) for s in sizes)
    has_paper = {c: section[(section["augment"] == c[0]) & _same(section["train_size"], c[1])]
                 ["paper_test_error"].notna().any() for c in conditions}
    any_paper_params = section["paper_params"].notna().any()
    any_variant = section["variant"].fillna("").astype(bool).any()
    header = ["Network", "Group", "Budget"] + (["Variant"] if any_variant else []) + ["Params"] \
        + (["Params (paper)"] if any_paper_params else [])
    for condition in conditions:
        label = column_label(data, *condition, show_size=show_size)
        header += [label] + ([f"{label} paper", f"{label} Δ"] if has_paper[condition] else []) \
            + [f"{label} equiv."]
    rows = []
    by_row = sort_cells(section, (*ROW_FIELDS, "augment", "train_size"))
    for (model, group, budget, variant), row_cells in _cells(by_row, ROW_FIELDS).items():
        row = [network_name(model), str(group), str(budget)] + ([variant or "–"] if any_variant else []) \
            + [format_params(row_cells["params"].iloc[0])]
        if any_paper_params:
            row.append(format_params(row_cells["paper_params"].dropna().iloc[0])
                       if row_cells["paper_params"].notna().any() else "–")
        for condition in conditions:
            row += _condition_cells(row_cells, condition, has_paper[condition])
        rows.append(row)
    return Section(data=data, header=header, rows=rows, sizes=sizes)


def _same(column: pd.Series, value: Any) -> pd.Series:
    if _is_missing(value):
        return column.map(_is_missing)
    return column.map(lambda v: not _is_missing(v) and v == value)


def paper_delta_text(cell: dict | pd.Series) -> str:
    """The Δ cell: ours - paper when the recipe is the paper preset, else which keys differ."""
    keys = cell["paper_recipe_keys"]
    if _is_missing(keys):
        return "–"
    if keys:
        return "recipe ≠ paper: " + short_difference(keys.split(", ") if not keys.startswith("(") else [keys])
    return format_diff(cell["diff_vs_paper"])


def _condition_cells(row_cells: pd.DataFrame, condition: tuple, with_paper: bool) -> list[str]:
    match = row_cells[(row_cells["augment"] == condition[0]) & _same(row_cells["train_size"], condition[1])]
    if match.empty:
        return ["–"] * (4 if with_paper else 2)
    cell = match.iloc[0]
    ours = format_error(cell["test_error_mean"], cell["test_error_std"], cell["n"])
    paper = [format_number(cell["paper_test_error"]), paper_delta_text(cell)]
    return [ours] + (paper if with_paper else []) + [format_small(cell["equivariance_error_mean"])]


def wide_sections(summary: pd.DataFrame) -> list[Section]:
    """One :class:`Section` per data set, rows network/group/budget/variant in the paper's order."""
    return [_section(data, section) for (data,), section in _cells(summary, ("data_label",)).items()]


PANEL_FIELDS = ("model", "data_label", "augment", "train_size", "budget", "variant")


def _mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean test error over seeds per recipe and epoch, with the display fields."""
    fields = curves.drop_duplicates("recipe").set_index("recipe")[[*PANEL_FIELDS, "group"]]
    mean = curves.groupby(["recipe", "epoch"], sort=True)["test_error"].mean().reset_index()
    return mean.join(fields, on="recipe")


def _first_epoch_at_or_below(curve: pd.DataFrame, level: float) -> Any:
    reached = curve[curve["test_error"] <= level + 1e-12]
    return int(reached["epoch"].iloc[0]) if len(reached) else "never"


def _error_at(curve: pd.DataFrame, fraction: float) -> float:
    """Mean test error at the last logged epoch <= ``fraction`` of the run's length."""
    cutoff = max(1, round(int(curve["epoch"].max()) * fraction))
    return float(curve[curve["epoch"] <= cutoff]["test_error"].iloc[-1])


def convergence_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per panel (network, data, augmentation, training-set size, budget, variant) and
    group: mean test error over seeds at 25 %, 50 % and 100 % of training, and the first
    epoch at which the mean curve is at or below the z2 network's final mean test error
    (``"never"`` when it does not get there, ``None`` when the panel has no z2 runs)."""
    columns = [*PANEL_FIELDS, "group", "epochs", "error_at_25pct", "error_at_50pct", "error_final",
               "first_epoch_at_z2_final"]
    if curves.empty:
        return pd.DataFrame(columns=columns)
    mean = _mean_curves(curves)
    rows = []
    for panel, panel_curves in _cells(mean, PANEL_FIELDS).items():
        by_group = _cells(panel_curves, ("group",))
        z2 = by_group.get(("z2",))
        z2_final = z2["test_error"].iloc[-1] if z2 is not None else None
        for (group,), curve in sorted(by_group.items(), key=lambda item: _order(item[0][0], GROUP_ORDER)):
            last = int(curve["epoch"].max())
            reached = None if z2_final is None else _first_epoch_at_or_below(curve, z2_final)
            rows.append(dict(zip(columns, [*panel, group, last, _error_at(curve, 0.25), _error_at(curve, 0.5),
                                           curve["test_error"].iloc[-1], reached])))
    summary = pd.DataFrame(rows, columns=columns)
    for column in ("train_size", "first_epoch_at_z2_final"):
        summary[column] = _as_object(summary[column])
    return sort_cells(summary, ("model", "data_label", "augment", "train_size", "budget", "variant", "group"))
