"""Build the whole report folder from run directories: tables and figures."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..io import write_text
from .collect import RunCollection, collect_runs
from .plots import plot_convergence, plot_data_efficiency
from .reference import DEFAULT_REFERENCE, load_reference
from .render import render_latex, render_markdown
from .table import convergence_summary, summarize

__all__ = ["Report", "build_report"]


@dataclass
class Report:
    """What :func:`build_report` wrote and what it found."""

    out_dir: Path
    files: list[Path]
    collection: RunCollection
    figures: list[Path] = field(default_factory=list)


def build_report(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 reference_path: str | os.PathLike | None = DEFAULT_REFERENCE) -> Report:
    """Collect the runs under ``paths`` and write ``table.md``, ``table.csv``
    (tidy, one row per network x group x data x augment x train size x epochs),
    ``runs.csv`` (one row per finished run kept), ``excluded.csv``,
    ``table.tex``, ``convergence.png``/``.pdf`` and, when several training-set
    sizes are present, ``data_efficiency.png``/``.pdf`` into ``out_dir``.
    Raises ValueError when no run directory is found."""
    inputs = [str(p) for p in paths]
    collection = collect_runs(inputs)
    if collection.runs.empty and collection.excluded.empty:
        raise ValueError(f"no runs found under {', '.join(inputs)}: expected directories holding "
                         "result.json or metrics.jsonl (single runs or Hydra multirun folders)")
    out = Path(out_dir)
    reference = load_reference(reference_path) if reference_path is not None else None
    summary = summarize(collection.runs, reference)
    convergence = convergence_summary(collection.curves)
    figures = plot_convergence(collection.curves, out) + plot_data_efficiency(collection.runs, out)
    files = [
        write_text(out / "table.md", render_markdown(summary, collection, convergence, inputs, figures)),
        write_text(out / "table.csv", summary.to_csv(index=False)),
        write_text(out / "table.tex", render_latex(summary)),
        write_text(out / "runs.csv", collection.runs.drop(columns=["mtime"]).to_csv(index=False)),
        write_text(out / "excluded.csv", collection.excluded.to_csv(index=False)),
    ]
    if not convergence.empty:
        files.append(write_text(out / "convergence.csv", convergence.to_csv(index=False)))
    return Report(out_dir=out, files=files + figures, collection=collection, figures=figures)
