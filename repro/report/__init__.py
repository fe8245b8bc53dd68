"""Reporting: collect run directories, aggregate over seeds, write tables and figures.

``build_report(paths, out_dir)`` is the entry point (``scripts/report.py`` is its CLI);
:mod:`.collect` finds and loads runs, :mod:`.table` aggregates them,
:mod:`.render` writes Markdown/LaTeX, :mod:`.plots` draws the figures,
:mod:`.reference` reads the paper's numbers and :mod:`.plan` estimates the cost
of the paper's sweep before it starts.
"""
from .build import Report, build_report
from .collect import RunCollection, RunFileWarning, collect_runs, find_run_dirs
from .plots import GROUP_COLORS, GROUP_MARKERS, plot_convergence, plot_data_efficiency
from .reference import DEFAULT_REFERENCE, load_reference
from .table import column_label, convergence_summary, summarize, wide_sections

__all__ = [
    "Report", "build_report", "RunCollection", "RunFileWarning", "collect_runs", "find_run_dirs",
    "GROUP_COLORS", "GROUP_MARKERS", "plot_convergence", "plot_data_efficiency",
    "DEFAULT_REFERENCE", "load_reference", "column_label", "convergence_summary", "summarize",
    "wide_sections",
]
