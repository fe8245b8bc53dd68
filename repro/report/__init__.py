"""Reporting: collect run directories, aggregate over seeds, write tables and figures.

``build_report(paths, out_dir)`` is the entry point (``scripts/report.py`` is its CLI);
:mod:`.collect` finds and loads runs, :mod:`.recipe` decides which runs are the same
experiment (identity up to the seed) and labels the variants, :mod:`.table` aggregates
them, :mod:`.efficiency` and :mod:`.robustness` compute the data-efficiency and
robustness tables, :mod:`.render` writes Markdown/LaTeX, :mod:`.plots` draws the
figures, :mod:`.reference` reads the paper's numbers, :mod:`.dashboard` logs the
report to wandb and :mod:`.values` holds the missing-value and sort helpers.
"""
from .build import Report, build_report
from .collect import RunCollection, RunFileWarning, collect_runs, find_run_dirs
from .reference import DEFAULT_REFERENCE, load_reference

__all__ = ["Report", "build_report", "RunCollection", "RunFileWarning", "collect_runs", "find_run_dirs",
           "DEFAULT_REFERENCE", "load_reference"]
