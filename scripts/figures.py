"""Draw the equivariance picture: a digit, its rotation, and G-conv feature maps on the Cayley diagram.

    python scripts/figures.py --out results/figures --groups p4 p4m

Writes equivariance_<group>.png (the frames x, r x and, for p4m, m x) and
equivariance_<group>.gif (one frame per group element) into --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.figures import (DEFAULT_DIGIT, DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DPI, FIGURE_GROUPS,  # noqa: E402
                           write_equivariance_figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/figures", help="output folder (default: %(default)s)")
    parser.add_argument("--groups", nargs="+", choices=FIGURE_GROUPS, default=list(FIGURE_GROUPS),
                        help="groups to draw (default: %(default)s)")
    parser.add_argument("--digit", type=int, default=DEFAULT_DIGIT,
                        help="index into scikit-learn's digits (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="side of the input image in pixels (default: %(default)s)")
    parser.add_argument("--channel", type=int, default=0, help="channel shown (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="filter initialisation seed (default: %(default)s)")
    parser.add_argument("--dpi", type=int, default=DPI, help="PNG resolution (default: %(default)s)")
    args = parser.parse_args(argv)
    for group in args.groups:
        try:
            files = write_equivariance_figures(group, args.out, dpi=args.dpi, digit=args.digit,
                                               image_size=args.image_size, channel=args.channel,
                                               seed=args.seed)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{group}: equivariance law holds to {files.residual:.1e}; wrote {files.png} and {files.gif}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
