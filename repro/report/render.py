"""The report as text: ``table.md`` (every table, with a reading guide) and ``table.tex`` (the
paper-style tables: rows network/group/budget/variant, one column block per data set, augmentation
and training-set size, the paper's number and the difference beside ours)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

from repro.markdown import markdown_table

from .collect import RunCollection
from .recipe import short_difference
from .table import KINDS, PREFERRED_ORDER, sort_cells
from .values import bound_prefix, group_rows, is_missing, rank

# Display names of the model registry's networks (the registry holds no display name).
NETWORK_NAMES = {"allcnnc": "All-CNN-C", "resnet44": "ResNet44", "resnet26": "ResNet26", "rotmnist": "RotMNIST-CNN"}
ROW_FIELDS = ("model", "group", "budget", "variant")
TEMPLATES = Path(__file__).resolve().parent / "templates"  # the prose of table.md, one file per section


def guide(name: str) -> str:
    """The prose of a section of ``table.md``: ``templates/<name>.md`` (package data)."""
    return (TEMPLATES / f"{name}.md").read_text(encoding="utf-8")


PER_RUN_HEADER = ["Run", "Network", "Group", "Data", "Augment", "Train size", "Budget", "Variant", "Seed",
                  "Steps", "Final test error (%)", "Best test error (%) (epoch)", "Equiv. error (group)",
                  "Params", "MACs/image", "Wall time (s)", "Identity"]
# LaTeX for the characters of the tables' text.
LATEX = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                       "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
                       "Δ": r"$\Delta$", "–": "--", "−": "-", "≠": r"$\neq$", "≤": r"$\leq$"})


DATA_NAMES = {"mnist_rot": "MNIST-rot"}  # display names of data sets that CIFAR's upper-casing does not give


def network_name(model: Any, group: Any = None) -> str:
    """Display name of a model registry name (unknown names unchanged); with ``group``, the paper's own
    name of that network where it has one (``rotmnist_cnn`` on z2: ``Z2CNN (rotmnist_cnn)``)."""
    import models
    paper = models.paper_name(model, group) if group is not None and model in models.list_models() else None
    return f"{paper} ({model})" if paper else NETWORK_NAMES.get(model, str(model))


def column_label(data: str, augment: str, train_size: Any = None, show_size: bool = False) -> str:
    """``CIFAR10`` (no augmentation), ``CIFAR10+`` (crop_flip), ``CIFAR10 rot_flip``, ``digits_rot``;
    with ``show_size``: ``digits_rot, 100 train`` or ``, full``."""
    base = str(data).upper() if str(data).startswith("cifar") else DATA_NAMES.get(str(data), str(data))
    if augment == "crop_flip":
        base += "+"
    elif augment not in ("none", None):
        base += f" {augment}"
    if show_size:
        base += ", full" if is_missing(train_size) else f", {int(train_size)} train"
    return base


def size_text(train_size: Any) -> str:
    """``100``, or ``full`` for the whole training set."""
    return "full" if is_missing(train_size) else str(int(train_size))


def format_number(value: float, spec: str = ".2f") -> str:
    """``value`` in the format ``spec``; ``–`` when missing."""
    return "–" if is_missing(value) else format(value, spec)


def format_error(mean: float, std: float, n: int) -> str:
    """``9.44 ± 0.12 (n=3)``; without the std when n = 1."""
    if is_missing(mean):
        return "–"
    return f"{mean:.2f}" + ("" if is_missing(std) else f" ± {std:.2f}") + f" (n={n})"


def format_params(params: Any) -> str:
    """``1.37M``, ``52.3k``, or the raw text for mixed values."""
    if is_missing(params) or isinstance(params, str):
        return "–" if is_missing(params) else params
    params = float(params)
    if params >= 1e6:
        return f"{params / 1e6:.2f}M"
    return f"{params / 1e3:.1f}k" if params >= 1e3 else f"{params:.0f}"


def has_variants(table: pd.DataFrame) -> bool:
    """Whether any row of ``table`` is a variant (so the table needs a Variant column)."""
    return table["variant"].fillna("").astype(bool).any()


class Section(NamedTuple):
    """One data set's table in the paper's layout, as display strings."""

    data: str
    header: list[str]
    rows: list[list[str]]
    sizes: list


def _condition_cells(cell: pd.DataFrame | None, with_paper: bool) -> list[str]:
    """Ours, [paper, Δ,] equivariance error; the Δ only when the recipe is the paper preset, else
    which keys differ."""
    if cell is None:
        return ["–"] * (4 if with_paper else 2)
    cell = cell.iloc[0]
    paper = []
    if with_paper:
        keys = cell["paper_recipe_keys"]  # "" for the paper preset, missing without a paper number
        delta = format_number(cell["diff_vs_paper"], "+.2f") if is_missing(keys) or not keys \
            else "recipe ≠ paper: " + short_difference(keys.split(", "))
        paper = [format_number(cell["paper_test_error"]), delta]
    return [format_error(cell["test_error_mean"], cell["test_error_std"], cell["n"]), *paper,
            format_number(cell["equivariance_error_mean"], ".1e")]


def _section(data: str, section: pd.DataFrame) -> Section:
    by_condition = group_rows(section, ("augment", "train_size"))
    conditions = sorted(by_condition, key=lambda c: (rank(c[0], PREFERRED_ORDER["augment"]), rank(c[1])))
    sizes = list(dict.fromkeys(size for _, size in by_condition))
    show_size = any(size is not None for size in sizes)
    has_paper = {c: by_condition[c]["paper_test_error"].notna().any() for c in conditions}
    any_paper_params, any_variant = section["paper_params"].notna().any(), has_variants(section)
    header = ["Network", "Group", "Budget"] + (["Variant"] if any_variant else []) + ["Params"] \
        + (["Params (paper)"] if any_paper_params else [])
    for condition in conditions:
        label = column_label(data, *condition, show_size=show_size)
        header += [label] + ([f"{label} paper", f"{label} Δ"] if has_paper[condition] else []) + [f"{label} equiv."]
    rows = []
    by_row = sort_cells(section, (*ROW_FIELDS, "augment", "train_size"))
    for (model, group, budget, variant), row_cells in group_rows(by_row, ROW_FIELDS).items():
        row = [network_name(model, group), str(group), str(budget)] + ([variant or "–"] if any_variant else []) \
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


def shown_path(path: str) -> str:
    """``path`` relative to the working folder where it lies inside it, else as given: the
    committed reports name no machine's folders."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _relative(path: str, root: str) -> str:
    relative = os.path.relpath(path, root) if root else path
    return path if relative == "." else relative


def _per_run_rows(runs: pd.DataFrame, root: str) -> list[list[str]]:
    rows = []
    for run in runs.to_dict("records"):
        best = format_number(run.get("best_test_error"))
        if not is_missing(run.get("best_epoch")):
            best += f" (ep {int(run['best_epoch'])})"
        equiv = format_number(run.get("equivariance_error"), ".1e")
        if not is_missing(run.get("equivariance_group")):
            equiv += f" ({run['equivariance_group']})"
        steps = "–" if is_missing(run.get("steps")) else int(run["steps"])
        rows.append([_relative(run["path"], root), network_name(run["model"]), run["group"], run["data_label"],
                     run["augment"], size_text(run["train_size"]), run["budget"], run["variant"] or "–", run["seed"],
                     steps, format_number(run["final_test_error"]), best, equiv, format_params(run.get("params")),
                     format_params(run.get("macs")), format_number(run.get("wall_time_s"), ".0f"), run["identity"]])
    return rows


def _excluded_rows(excluded: pd.DataFrame, root: str) -> list[list[str]]:
    rows = []
    for run in excluded.to_dict("records"):
        identity = "/".join("?" if is_missing(run[k]) else str(run[k]) for k in ("model", "group", "data", "augment"))
        size = "?" if is_missing(run["model"]) else size_text(run["train_size"])
        seed = "?" if is_missing(run["seed"]) else run["seed"]
        rows.append([_relative(run["path"], root), run["status"], identity, size, seed, run["reason"]])
    return rows


def _convergence_rows(convergence: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in convergence.to_dict("records"):
        label = column_label(row["data_label"], row["augment"], row["train_size"], not is_missing(row["train_size"]))
        variant = f", {row['variant']}" if row["variant"] else ""
        panel = f"{network_name(row['model'])} {label}, {row['budget']}{variant}"
        reached = row["first_epoch_at_z2_final"]
        rows.append([panel, row["group"], row["epochs"], format_number(row["error_at_25pct"]),
                     format_number(row["error_at_50pct"]), format_number(row["error_final"]),
                     "– (no z2 run)" if reached is None else reached])
    return rows


def _efficiency_markdown(efficiency: pd.DataFrame) -> str:
    any_variant = has_variants(efficiency)
    header = ["Network", "Data", "Augment", "Budget"] + (["Variant"] if any_variant else []) \
        + ["Group", "Sizes tried", "z2 full-data error (%)", "Images at that error", "Fraction of full set",
           "In words"]
    rows = []
    for row in efficiency.to_dict("records"):
        bound = bound_prefix(row["crossing"])
        size = "–" if is_missing(row["size_at_z2_full_error"]) else f"{bound}{row['size_at_z2_full_error']:.0f}"
        fraction = "–" if is_missing(row["fraction_of_full"]) else f"{bound}{row['fraction_of_full']:.2f}x"
        rows.append([network_name(row["model"]), row["data_label"], row["augment"], row["budget"]]
                    + ([row["variant"] or "–"] if any_variant else [])
                    + [row["group"], row["sizes"], format_number(row["z2_full_error"]), size, fraction, row["text"]])
    align = ["l"] * (len(header) - 4) + ["r", "r", "r", "l"]
    return guide("data_efficiency") + "\n" + markdown_table(header, rows, align=align)


def _robustness_markdown(robustness: pd.DataFrame) -> str:
    """Per kind: one row per cell, one column per transformation, cells ``mean ± std (n=..)``."""
    parts = [guide("robustness")]
    for kind, table in robustness.groupby("kind", sort=False):
        transforms = list(dict.fromkeys(table.sort_values("order", kind="stable")["transform"]))
        any_variant = has_variants(table)
        header = ["Network", "Group", "Data", "Augment", "Train size", "Budget"] \
            + (["Variant"] if any_variant else []) + transforms
        rows = []
        for _, cell in table.groupby("recipe", sort=False):
            first = cell.iloc[0]
            by_name = {row["transform"]: format_error(row["mean"], row["std"], row["n"])
                       for _, row in cell.iterrows()}
            rows.append([network_name(first["model"]), first["group"], first["data_label"], first["augment"],
                         size_text(first["train_size"]), first["budget"]]
                        + ([first["variant"] or "–"] if any_variant else [])
                        + [by_name.get(name, "–") for name in transforms])
        parts.append(f"### Test set transformed by: {KINDS.get(kind, kind)}\n\n" + markdown_table(header, rows))
    return "\n".join(parts)


def render_markdown(summary: pd.DataFrame, collection: RunCollection, convergence: pd.DataFrame,
                    inputs: Sequence[str], figures: Sequence[str | os.PathLike],
                    efficiency: pd.DataFrame, robustness: pd.DataFrame) -> str:
    """The whole ``table.md``: guide, one table per data set, data efficiency, robustness,
    convergence summary, per-run results, excluded runs and warnings."""
    all_paths = list(collection.runs["path"]) + list(collection.excluded["path"])
    root = os.path.commonpath(all_paths) if all_paths else ""
    runs = sort_cells(collection.runs, ("data_label", "model", "augment", "train_size", "group", "budget", "variant",
                                        "seed", "path"))
    parts = ["# G-CNN reproduction: test error (%)\n",
             f"Built by `scripts/report.py` from {len(collection.runs)} finished run(s) "
             f"({len(collection.excluded)} excluded) found under: "
             + ", ".join(f"`{p}`" for p in inputs) + ".\n", guide("reading_guide")]
    for section in wide_sections(summary):
        note = "One column per training-set size (data-efficiency sweep).\n\n" if len(section.sizes) > 1 else ""
        parts.append(f"## {section.data}\n\n{note}{markdown_table(section.header, section.rows)}")
    if not efficiency.empty:
        parts.append(_efficiency_markdown(efficiency))
    if not robustness.empty:
        parts.append(_robustness_markdown(robustness))
    if not convergence.empty:
        parts.append(guide("convergence") + "\n")
        parts.append(markdown_table(["Panel", "Group", "Epochs", "Test error @25%", "@50%", "Final",
                                     "First epoch ≤ z2 final"], _convergence_rows(convergence)) + "\n")
    if figures:
        parts.append("Figures: " + ", ".join(f"`{Path(f).name}`" for f in figures) + ".\n\n")
    shown = shown_path(root) if root else root
    parts.append(f"## Per-run results\n\nRun paths are relative to `{shown}`; `Identity` is the hash of "
                 "the run's resolved config (seed included, file locations excluded).\n\n"
                 + markdown_table(PER_RUN_HEADER, _per_run_rows(runs, root)) + "\n")
    parts.append(f"## Excluded runs ({len(collection.excluded)})\n\n"
                 + (markdown_table(["Run", "Status", "Model/group/data/augment", "Train size", "Seed",
                                    "Reason"], _excluded_rows(collection.excluded, root))
                    if len(collection.excluded) else "None.\n") + "\n")
    parts.append(f"## Warnings ({len(collection.warnings)})\n\n"
                 + ("".join(f"- {w}\n" for w in collection.warnings) if collection.warnings else "None.\n"))
    return "".join(part.rstrip("\n") + "\n\n" for part in parts).rstrip("\n") + "\n"


def render_latex(summary: pd.DataFrame) -> str:
    """``table.tex``: one booktabs ``tabular`` per data set (needs ``\\usepackage{booktabs}``)."""
    tables = []
    for section in wide_sections(summary):
        header, *rows = [" & ".join(str(cell).translate(LATEX) for cell in row) + r" \\"
                         for row in [section.header, *section.rows]]
        tables.append("\n".join([f"% {section.data}", r"\begin{tabular}{ll" + "r" * (len(section.header) - 2) + "}",
                                 r"\toprule", header, r"\midrule", *rows, r"\bottomrule", r"\end{tabular}", ""]))
    return ("% Test error (%) mean $\\pm$ std over seeds (n); generated by scripts/report.py.\n"
            "% Requires \\usepackage{booktabs}.\n" + "\n".join(tables))
