"""Write the report's tables as Markdown (``table.md``) and LaTeX (``table.tex``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .collect import RunCollection
from .table import (Section, column_label, format_number, format_params, format_small,
                    network_name, sort_cells, wide_sections)

__all__ = ["markdown_table", "render_markdown", "render_latex"]

READING_GUIDE = """\
How to read the tables: each cell is the **final-epoch test error in %**, mean ± sample
standard deviation over seeds, with the number of seeds `n` (no std when n = 1). Rows are
network / group / number of training epochs; `Params` is the trained model's parameter
count. Column titles name the data set and augmentation: `CIFAR10` = no augmentation,
`CIFAR10+` = horizontal flips and translations of up to 2 px, `... rot_flip` = 90-degree
rotations and flips. When a data set was trained on several training-set sizes (the
data-efficiency sweep), it gets one column per size: `100 train` is a class-balanced subset
of 100 training images, `full` the whole training set. `paper` is the number the paper
reports for the same network, group and augmentation on the full training set (source:
`results/paper_reference.csv`), `Δ` = ours − paper in percentage points (negative: ours is
better). `equiv.` is the measured equivariance error of the trained models (mean over seeds
of: mean over test images of the largest relative logit change |f(gx) − f(x)| / |f(x)| over
the group's transformations g; z2 models are measured with the p4m transformations).
Runs that are unfinished, crashed, corrupt or duplicated are not averaged: they are listed
under "Excluded runs".
"""


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub pipe table."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _common_root(paths: Sequence[str]) -> str:
    return os.path.commonpath(paths) if paths else ""


def _relative(path: str, root: str) -> str:
    relative = os.path.relpath(path, root) if root else path
    return path if relative == "." else relative


def _per_run_rows(runs: pd.DataFrame, root: str) -> list[list[str]]:
    rows = []
    for run in runs.to_dict("records"):
        best = format_number(run.get("best_test_error"))
        if not _missing(run.get("best_epoch")):
            best += f" (ep {int(run['best_epoch'])})"
        equiv = format_small(run.get("equivariance_error"))
        if not _missing(run.get("equivariance_group")):
            equiv += f" ({run['equivariance_group']})"
        size = "full" if _missing(run["train_size"]) else run["train_size"]
        wall = "–" if _missing(run.get("wall_time_s")) else f"{float(run['wall_time_s']):.0f}"
        rows.append([_relative(run["path"], root), network_name(run["model"]), run["group"], run["data"],
                     run["augment"], size, run["seed"], run["epochs"], format_number(run["final_test_error"]),
                     best, equiv, format_params(run.get("params")), format_params(run.get("macs")), wall])
    return rows


PER_RUN_HEADER = ["Run", "Network", "Group", "Data", "Augment", "Train size", "Seed", "Epochs",
                  "Final test error (%)", "Best test error (%) (epoch)", "Equiv. error (group)",
                  "Params", "MACs/image", "Wall time (s)"]


def _sorted_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return sort_cells(runs, ("data", "model", "augment", "train_size", "group", "seed", "path"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _excluded_rows(excluded: pd.DataFrame, root: str) -> list[list[str]]:
    rows = []
    for run in excluded.to_dict("records"):
        known = not _missing(run["model"])
        identity = "/".join("?" if _missing(run[k]) else str(run[k]) for k in ("model", "group", "data", "augment"))
        size = ("full" if _missing(run["train_size"]) else run["train_size"]) if known else "?"
        seed = "?" if _missing(run["seed"]) else run["seed"]
        rows.append([_relative(run["path"], root), run["status"], identity, size, seed, run["reason"]])
    return rows


def _convergence_rows(convergence: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in convergence.to_dict("records"):
        panel = f"{network_name(row['model'])} {column_label(row['data'], row['augment'], row['train_size'], row['train_size'] is not None)}"
        reached = row["first_epoch_at_z2_final"]
        rows.append([panel, row["group"], row["epochs"], format_number(row["error_at_25pct"]),
                     format_number(row["error_at_50pct"]), format_number(row["error_final"]),
                     "never" if reached is None else reached])
    return rows


def _section_markdown(section: Section) -> str:
    note = ""
    if len(section.sizes) > 1:
        note = "One column per training-set size (data-efficiency sweep).\n\n"
    return f"## {section.data}\n\n{note}{markdown_table(section.header, section.rows)}\n"


def render_markdown(summary: pd.DataFrame, collection: RunCollection, convergence: pd.DataFrame,
                    inputs: Sequence[str], figures: Sequence[str | os.PathLike]) -> str:
    """The whole ``table.md``: guide, one table per data set, convergence summary,
    per-run results, excluded runs and warnings."""
    all_paths = list(collection.runs["path"]) + list(collection.excluded["path"])
    root = _common_root(all_paths)
    parts = ["# G-CNN reproduction: test error (%)\n",
             f"Built by `scripts/report.py` from {len(collection.runs)} finished run(s) "
             f"({len(collection.excluded)} excluded) found under: "
             + ", ".join(f"`{p}`" for p in inputs) + ".\n", READING_GUIDE]
    parts += [_section_markdown(section) for section in wide_sections(summary)]
    if not convergence.empty:
        parts.append("## Convergence\n\nMean test error (%) over seeds at a quarter, half and the end of "
                     "training, and the first epoch at which the group's mean curve reaches the z2 "
                     "network's final test error (earlier = faster convergence; `never` = not reached). "
                     "The curves are in `convergence.png`.\n\n")
        parts.append(markdown_table(["Panel", "Group", "Epochs", "Test error @25%", "@50%", "Final",
                                     "First epoch ≤ z2 final"], _convergence_rows(convergence)) + "\n")
    if figures:
        parts.append("Figures: " + ", ".join(f"`{Path(f).name}`" for f in figures) + ".\n\n")
    parts.append(f"## Per-run results\n\nRun paths are relative to `{root}`.\n\n"
                 + markdown_table(PER_RUN_HEADER, _per_run_rows(_sorted_runs(collection.runs), root)) + "\n")
    parts.append(f"## Excluded runs ({len(collection.excluded)})\n\n"
                 + (markdown_table(["Run", "Status", "Model/group/data/augment", "Train size", "Seed",
                                    "Reason"], _excluded_rows(collection.excluded, root))
                    if len(collection.excluded) else "None.\n") + "\n")
    parts.append(f"## Warnings ({len(collection.warnings)})\n\n"
                 + ("".join(f"- {w}\n" for w in collection.warnings) if collection.warnings else "None.\n"))
    return "".join(part.rstrip("\n") + "\n\n" for part in parts).rstrip("\n") + "\n"


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: Any) -> str:
    escaped = "".join(LATEX_SPECIALS.get(char, char) for char in str(text))
    return (escaped.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--")
            .replace("−", "-"))


def _section_latex(section: Section) -> str:
    spec = "ll" + "r" * (len(section.header) - 2)
    lines = [f"% {section.data}", r"\begin{tabular}{" + spec + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in section.header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in section.rows]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def render_latex(summary: pd.DataFrame) -> str:
    """``table.tex``: one booktabs ``tabular`` per data set (needs ``\\usepackage{booktabs}``)."""
    header = ("% Test error (%) mean $\\pm$ std over seeds (n); generated by scripts/report.py.\n"
              "% Requires \\usepackage{booktabs}.\n")
    return header + "\n".join(_section_latex(section) for section in wide_sections(summary))
