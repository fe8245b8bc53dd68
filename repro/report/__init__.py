"""Reporting: collect run directories, aggregate over seeds, write tables and figures.

:mod:`.collect` finds and loads runs, :mod:`.recipe` decides which runs are the same experiment and
labels the variants, :mod:`.table` computes the numbers, :mod:`.render` writes Markdown/LaTeX,
:mod:`.plots` draws the figures; `scripts/report.py --wandb` logs the report to wandb.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..io import write_text
from .collect import RunCollection, RunFileWarning, collect_runs, find_run_dirs
from .plots import convergence_figure, data_efficiency_figure, robustness_figure, save_figure
from .render import render_latex, render_markdown, shown_path
from .table import (DEFAULT_REFERENCE, convergence_summary, data_efficiency, load_reference, robustness_runs,
                    robustness_summary, summarize)

__all__ = ["Report", "build_report", "RunCollection", "RunFileWarning", "collect_runs", "find_run_dirs",
           "DEFAULT_REFERENCE", "load_reference"]


@dataclass
class Report:
    """What :func:`build_report` wrote and what it found."""

    out_dir: Path
    files: list[Path]
    collection: RunCollection
    figures: list[Path]
    summary: pd.DataFrame
    efficiency: pd.DataFrame
    robustness: pd.DataFrame


def build_report(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 reference_path: str | os.PathLike = DEFAULT_REFERENCE) -> Report:
    """Collect the runs under ``paths`` and write into ``out_dir``: ``table.md`` (all tables),
    ``table.csv`` (one row per cell), ``table.tex``, ``runs.csv``, ``excluded.csv``, ``convergence.csv``
    and ``.png``/``.pdf``; where they apply ``data_efficiency`` and ``robustness`` ``.csv``/``.png``/``.pdf``.
    Raises ValueError when no run directory is found."""
    inputs = [str(p) for p in paths]
    collection = collect_runs(inputs)
    if collection.runs.empty and collection.excluded.empty:
        raise ValueError(f"no runs found under {', '.join(inputs)}: expected directories holding "
                         "result.json or metrics.jsonl (single runs or Hydra multirun folders)")
    out = Path(out_dir)
    summary = summarize(collection.runs, load_reference(reference_path))
    convergence = convergence_summary(collection.curves)
    efficiency = data_efficiency(summary)
    per_run_robustness = robustness_runs(collection.runs)
    robustness = robustness_summary(per_run_robustness)
    figures = (save_figure(convergence_figure(collection.curves), out / "convergence")
               + save_figure(data_efficiency_figure(summary, efficiency), out / "data_efficiency")
               + save_figure(robustness_figure(robustness), out / "robustness"))
    runs = collection.runs.drop(columns=["mtime", "items", "robustness"])
    tables = {"table.md": render_markdown(summary, collection, convergence, inputs, figures, efficiency, robustness),
              "table.csv": summary.to_csv(index=False), "table.tex": render_latex(summary),
              "runs.csv": _shown_paths(runs).to_csv(index=False),
              "excluded.csv": _shown_paths(collection.excluded).to_csv(index=False)}
    optional = {"convergence.csv": convergence, "data_efficiency.csv": efficiency,
                "robustness.csv": _shown_paths(per_run_robustness)}
    tables.update({name: frame.to_csv(index=False) for name, frame in optional.items() if not frame.empty})
    files = [write_text(out / name, text) for name, text in tables.items()]
    return Report(out_dir=out, files=files + figures, collection=collection, figures=figures,
                  summary=summary, efficiency=efficiency, robustness=robustness)


def _shown_paths(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its run paths as ``table.md`` shows them (:func:`shown_path`)."""
    return frame.assign(path=frame["path"].map(shown_path)) if "path" in frame else frame
