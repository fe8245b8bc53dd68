"""Print the model table (params vs the paper, MACs, invariance error) for every arch x group.

    python scripts/models_table.py [--out results/models.md]  # print markdown, and write it atomically
"""
from __future__ import annotations

import argparse
import sys

import models
from repro.io import write_text
from repro.models_table import models_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown to this file (atomic replace)")
    parser.add_argument("--archs", nargs="+", default=models.list_models(), choices=models.list_models())
    args = parser.parse_args(argv)
    text = models_table(args.archs)
    print(text, end="")
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
