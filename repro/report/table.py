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
from .values import as_object, group_rows, is_missing, rank

# Display fields of a cell (all runs of one recipe, i.e. one identity up to the seed).
CELL_FIELDS = ("data", "data_label", "data_format", "augment", "train_size", "model", "group", "epochs",
               "budget", "variant", "recipe")
GROUP_ORDER = ("z2", "p4", "p4m")
MODEL_ORDER = ("allcnnc", "resnet44", "resnet26", "rotmnist")
AUGMENT_ORDER = ("none", "crop_flip", "rot_flip")
PREFERRED_ORDER = {"model": MODEL_ORDER, "augment": AUGMENT_ORDER, "group": GROUP_ORDER}
NETWORK_NAMES = {"allcnnc": "All-CNN-C", "resnet44": "ResNet44", "resnet26": "ResNet26",
                 "rotmnist": "RotMNIST-CNN"}
SUMMARY_COLUMNS = [*CELL_FIELDS, "n", "seeds", "n_train", "test_error_mean", "test_error_std",
                   "test_error_min", "test_error_max", "paper_test_error", "diff_vs_paper",
                   "paper_recipe_diff", "paper_recipe_keys", "params", "paper_params",
                   "equivariance_error_mean", "equivariance_group", "paper_source"]
SORT_FIELDS = ("data_label", "augment", "train_size", "model", "group", "budget", "variant")
ROW_FIELDS = ("model", "group", "budget", "variant")
PANEL_FIELDS = ("model", "data_label", "augment", "train_size", "budget", "variant")


def network_name(model: Any) -> str:
    """Display name of a model registry name (unknown names unchanged)."""
    return NETWORK_NAMES.get(model, str(model))


def _unique(values: pd.Series) -> list:
    return list(dict.fromkeys(v for v in values if not is_missing(v)))


def _paper_match(row: dict, items: dict, ref: dict) -> tuple[str, str]:
    """``(keys, described)``: where the cell's recipe differs from the paper preset
    (both empty when it matches)."""
    preset = ref.get("preset")
    if is_missing(preset) or not preset:
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
    ref = paper.get((row["model"], row["group"], row["data"], row["augment"])) \
        if is_missing(row["train_size"]) else None
    keys, described = _paper_match(row, first["items"], ref) if ref is not None else (None, None)
    n_train = _unique(cell["n_train"])
    row.update(
        n=len(errors), seeds=",".join(str(s) for s in cell["seed"]),
        n_train=n_train[0] if len(n_train) == 1 else None,
        test_error_mean=errors.mean(), test_error_std=errors.std(ddof=1) if len(errors) > 1 else math.nan,
        test_error_min=errors.min(), test_error_max=errors.max(),
        params=params[0] if len(params) == 1 else ("/".join(map(str, params)) or None),
        equivariance_error_mean=pd.to_numeric(cell["equivariance_error"], errors="coerce").mean(),
        equivariance_group=",".join(map(str, _unique(cell["equivariance_group"]))) or None,
        paper_test_error=ref["test_error"] if ref is not None else math.nan,
        paper_params=ref["params"] if ref is not None else math.nan,
        paper_source=ref["source"] if ref is not None else None,
        paper_recipe_keys=keys, paper_recipe_diff=described,
    )
    matches = ref is not None and keys == ""
    row["diff_vs_paper"] = row["test_error_mean"] - row["paper_test_error"] if matches else math.nan
    return row


def _sort_key(name: str, value: Any) -> tuple:
    if name == "budget":  # "30 epochs x 8 steps": by the rest of the text, then the number
        number, _, unit = str(value).partition(" ")
        return (unit, float(number)) if number.replace(".", "", 1).isdigit() else (unit, math.inf)
    return rank(value, PREFERRED_ORDER.get(name, ()))


def sort_cells(table: pd.DataFrame, columns: tuple[str, ...] = SORT_FIELDS) -> pd.DataFrame:
    """Rows in the paper's order: data, then augmentation (none, crop_flip, rot_flip),
    training-set size (full last), network (All-CNN-C, ResNet44, ...), group (z2, p4,
    p4m), budget, and the most common recipe before its variants."""
    if table.empty:
        return table
    rows = table[list(columns)].itertuples(index=False, name=None)
    keys = [tuple(_sort_key(name, value) for name, value in zip(columns, row)) for row in rows]
    return table.iloc[sorted(range(len(keys)), key=keys.__getitem__)].reset_index(drop=True)


def summarize(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell (runs whose identities differ in the seed alone): ``n`` seeds,
    final test error mean / sample std (ddof 1; NaN when n = 1) / min / max in %, the
    paper's number where one applies (same network, group, data set and augmentation,
    full training set), ``diff_vs_paper`` = ours - paper only when the cell's recipe is
    the paper preset (else ``paper_recipe_keys`` names the keys that differ), params and
    the mean equivariance error."""
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    paper = {} if reference is None else {(row["network"], row["group"], row["dataset"], row["augment"]): row
                                          for row in reference.to_dict("records")}
    rows = [_summarize_cell(cell, paper) for _, cell in runs.groupby("recipe", sort=False)]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for column in ("train_size", "epochs", "params", "paper_params", "n_train"):
        summary[column] = as_object(summary[column])
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
        base += ", full" if is_missing(train_size) else f", {int(train_size)} train"
    return base


def format_error(mean: float, std: float, n: int) -> str:
    """``9.44 ± 0.12 (n=3)``; without the std when n = 1."""
    if is_missing(mean):
        return "–"
    spread = "" if is_missing(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} (n={n})"


def format_params(params: Any) -> str:
    """``1.37M``, ``52.3k``, or the raw text for mixed values."""
    if is_missing(params):
        return "–"
    if isinstance(params, str):
        return params
    params = float(params)
    if params >= 1e6:
        return f"{params / 1e6:.2f}M"
    return f"{params / 1e3:.1f}k" if params >= 1e3 else f"{params:.0f}"


def format_number(value: float, spec: str = ".2f") -> str:
    """``value`` in the format ``spec`` (``+.2f`` for differences, ``.1e`` for
    equivariance errors); ``–`` when missing."""
    return "–" if is_missing(value) else format(value, spec)


def paper_delta_text(cell: dict | pd.Series) -> str:
    """The Δ cell: ours - paper when the recipe is the paper preset, else which keys differ."""
    keys = cell["paper_recipe_keys"]
    if is_missing(keys):
        return "–"
    if keys:
        return "recipe ≠ paper: " + short_difference(keys.split(", ") if not keys.startswith("(") else [keys])
    return format_number(cell["diff_vs_paper"], "+.2f")


def has_variants(table: pd.DataFrame) -> bool:
    """Whether any row of ``table`` is a variant (so the table needs a Variant column)."""
    return table["variant"].fillna("").astype(bool).any()


@dataclass
class Section:
    """One data set's table in the paper's layout: ``header`` and ``rows`` of display strings."""

    data: str
    header: list[str]
    rows: list[list[str]]
    sizes: list


def _condition_cells(cell: pd.DataFrame | None, with_paper: bool) -> list[str]:
    if cell is None:
        return ["–"] * (4 if with_paper else 2)
    cell = cell.iloc[0]
    paper = [format_number(cell["paper_test_error"]), paper_delta_text(cell)] if with_paper else []
    return [format_error(cell["test_error_mean"], cell["test_error_std"], cell["n"]), *paper,
            format_number(cell["equivariance_error_mean"], ".1e")]


def _section(data: str, section: pd.DataFrame) -> Section:
    by_condition = group_rows(section, ("augment", "train_size"))
    conditions = sorted(by_condition, key=lambda c: (rank(c[0], AUGMENT_ORDER), rank(c[1])))
    sizes = list(dict.fromkeys(size for _, size in by_condition))
    show_size = any(size is not None for size in sizes)
    has_paper = {c: by_condition[c]["paper_test_error"].notna().any() for c in conditions}
    any_paper_params, any_variant = section["paper_params"].notna().any(), has_variants(section)
    header = ["Network", "Group", "Budget"] + (["Variant"] if any_variant else []) + ["Params"] \
        + (["Params (paper)"] if any_paper_params else [])
    for condition in conditions:
        label = column_label(data, *condition, show_size=show_size)
        header += [label] + ([f"{label} paper", f"{label} Δ"] if has_paper[condition] else []) \
            + [f"{label} equiv."]
    rows = []
    by_row = sort_cells(section, (*ROW_FIELDS, "augment", "train_size"))
    for (model, group, budget, variant), row_cells in group_rows(by_row, ROW_FIELDS).items():
        row = [network_name(model), str(group), str(budget)] + ([variant or "–"] if any_variant else []) \
            + [format_params(row_cells["params"].iloc[0])]
        if any_paper_params:
            row.append(format_params(next(iter(row_cells["paper_params"].dropna()), None)))
        cells = group_rows(row_cells, ("augment", "train_size"))
        for condition in conditions:
            row += _condition_cells(cells.get(condition), has_paper[condition])
        rows.append(row)
    return Section(data=data, header=header, rows=rows, sizes=sizes)


def wide_sections(summary: pd.DataFrame) -> list[Section]:
    """One :class:`Section` per data set, rows network/group/budget/variant in the paper's order."""
    return [_section(data, section) for (data,), section in group_rows(summary, ("data_label",)).items()]


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
    fields = curves.drop_duplicates("recipe").set_index("recipe")[[*PANEL_FIELDS, "group"]]
    mean = curves.groupby(["recipe", "epoch"], sort=True)["test_error"].mean().reset_index().join(fields, on="recipe")
    rows = []
    for panel, panel_curves in group_rows(mean, PANEL_FIELDS).items():
        by_group = group_rows(panel_curves, ("group",))
        z2 = by_group.get(("z2",))
        z2_final = z2["test_error"].iloc[-1] if z2 is not None else None
        for (group,), curve in sorted(by_group.items(), key=lambda item: rank(item[0][0], GROUP_ORDER)):
            reached = None
            if z2_final is not None:
                below = curve[curve["test_error"] <= z2_final + 1e-12]
                reached = int(below["epoch"].iloc[0]) if len(below) else "never"
            rows.append(dict(zip(columns, [*panel, group, int(curve["epoch"].max()), _error_at(curve, 0.25),
                                           _error_at(curve, 0.5), curve["test_error"].iloc[-1], reached])))
    summary = pd.DataFrame(rows, columns=columns)
    for column in ("train_size", "first_epoch_at_z2_final"):
        summary[column] = as_object(summary[column])
    return sort_cells(summary, ("model", "data_label", "augment", "train_size", "budget", "variant", "group"))
