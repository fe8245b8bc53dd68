"""Print the model table (params vs the paper, MACs, invariance error) for every arch x group.

    python scripts/models.py                          # print markdown
    python scripts/models.py --out results/models.md  # also write it atomically
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This file is itself named models.py: put the repository root, not scripts/, first
# on the path so that `import models` finds the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import gcnn  # noqa: E402
import models  # noqa: E402
from repro.io import write_text  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown to this file (atomic replace)")
    parser.add_argument("--archs", nargs="+", default=models.list_models(), choices=models.list_models())
    args = parser.parse_args(argv)
    rows = [models.summarize(arch, group) for arch in args.archs for group in gcnn.GROUP_NAMES]
    report = models.summary_report(rows)
    print(report, end="")
    if args.out:
        write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
