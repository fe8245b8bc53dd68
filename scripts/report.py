"""Build the results report from run directories and Hydra sweep folders.

    python scripts/report.py multirun/demo runs/ --out results/demo/

Writes table.md / table.csv / table.tex, runs.csv, excluded.csv and the figures
(convergence.png/.pdf, data_efficiency.png/.pdf) into --out.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.report import DEFAULT_REFERENCE, RunFileWarning, build_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories or sweep directories (searched at any depth)")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/demo/")
    parser.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="CSV of the paper's numbers")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunFileWarning)  # printed below, one line each
            report = build_report(args.paths, args.out, args.reference)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for message in report.collection.warnings:
        print(f"warning: {message}", file=sys.stderr)
    runs, excluded = len(report.collection.runs), len(report.collection.excluded)
    print(f"report: {runs} finished run(s) averaged, {excluded} excluded (see table.md); wrote:")
    for path in report.files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
