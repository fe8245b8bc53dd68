"""Build the results report from run directories and Hydra sweep folders.

    python scripts/report.py multirun/demo runs/ --out results/demo/ [--wandb]

Writes the tables (table.md/.csv/.tex, runs.csv, excluded.csv) and figures into --out; with --wandb
also logs them (tables as ``wandb.Table``, PNG figures, robustness means as summary numbers) to one
wandb run (``job_type="report"``) in the sweep's group, offline (under --out/wandb/, ``wandb sync``
uploads them) unless --wandb-mode online.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from repro.report import DEFAULT_REFERENCE, RunFileWarning, build_report
from repro.report.dashboard import log_report, wandb_group, wandb_project
from repro.report.record import compare_cells, comparison_text, read_cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories or sweep directories (searched at any depth)")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/demo/")
    parser.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="CSV of the paper's numbers")
    parser.add_argument("--wandb", action="store_true", help="also log the report to wandb (offline by default)")
    parser.add_argument("--wandb-group", default=None,
                        help="wandb group (default: the runs' sweep_name when they all agree)")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online"],
                        help="offline (default: files under --out/wandb/, upload with `wandb sync`) or online")
    parser.add_argument("--compare-to", metavar="RECORD",
                        help="print the new table beside the report in RECORD (e.g. results/demo), cell by cell")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunFileWarning)  # printed below, one line each
            report = build_report(args.paths, args.out, args.reference)
        if args.wandb:
            group, project = wandb_group(report, args.wandb_group), wandb_project(report)
        record = args.compare_to and comparison_text(compare_cells(read_cells(args.out), read_cells(args.compare_to)),
                                                     args.compare_to)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for message in report.collection.warnings:
        print(f"warning: {message}", file=sys.stderr)
    runs, excluded = len(report.collection.runs), len(report.collection.excluded)
    print(f"report: {runs} finished run(s) averaged, {excluded} excluded (see table.md); wrote:")
    for path in report.files:
        print(f"  {path}")
    if record:
        print(record, end="")
    if args.wandb:
        folder = log_report(report, group=group, project=project, mode=args.wandb_mode)
        print(f"wandb ({args.wandb_mode}): project {project}, group {group}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
