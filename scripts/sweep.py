"""Run a named sweep (repro/sweeps.py): print its cost estimate, train one Hydra multirun per network,
build the report. What the Makefile's sweep targets call.

    python scripts/sweep.py table --seeds 0,1,2 [--epochs 300]       # make reproduce-table
    python scripts/sweep.py demo --dry-run                          # print the commands only
    python scripts/sweep.py data-efficiency --data cifar100 data.verify_checksums=false

Exit status 0: done; 1: declined or refused (a GPU sweep without a GPU, no terminal, no FORCE=1);
2: bad arguments; else that of the first command that failed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from repro.sweeps import SWEEPS, UserValues, make_launch, run_sweep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help=f"one of {list(SWEEPS)}")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides of every training run (ARGS)")
    for option, text in (("--data", "data config (DATA)"), ("--format", "layout of a cifar_folder (FORMAT)"),
                         ("--networks", "comma list of the sweep's networks (default: all)"),
                         ("--seeds", "comma list of seeds (SEEDS)"),
                         ("--epochs", "one number for all, or arch=N,... (EPOCHS; default: the recipes')"),
                         ("--augments", "comma list of configs/augment/ choices (AUGMENTS)"),
                         ("--train-sizes", "comma list of training-set sizes, full = all"),
                         ("--steps-per-epoch", "optimiser steps per epoch of an equal-steps sweep"),
                         ("--launcher", "hydra/launcher (LAUNCHER)"), ("--dir", "the sweep folder"),
                         ("--out", "the report folder")):
        p.add_argument(option, help=text)
    p.add_argument("--record", action="store_true", help="write the committed record (RECORD=1)")
    p.add_argument("--report-args", default="", help="extra options of scripts/report.py (REPORT_ARGS)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_intermixed_args(argv)
    values = UserValues(data=args.data, data_format=args.format, networks=args.networks, seeds=args.seeds,
                        epochs=args.epochs, augments=args.augments, train_sizes=args.train_sizes,
                        steps_per_epoch=args.steps_per_epoch, launcher=args.launcher,
                        overrides=tuple(args.overrides))
    try:
        launch = make_launch(args.name, values, args.dir, args.out, args.record, shlex.split(args.report_args))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    force = os.environ.get("FORCE", "") not in ("", "0")
    return run_sweep(launch, force, sys.stdin.isatty(), dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
