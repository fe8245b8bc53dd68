"""Draw the equivariance picture: a digit, its rotation, and G-conv feature maps on the Cayley diagram.

    python scripts/figures.py --out results/figures --groups p4 p4m  # equivariance_<group>.png and .gif
"""
from __future__ import annotations

import argparse
import sys

from repro.figures import DEFAULT_IMAGE_SIZE, DPI, FIGURE_GROUPS, write_equivariance_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/figures", help="output folder (default: %(default)s)")
    parser.add_argument("--groups", nargs="+", choices=FIGURE_GROUPS, default=list(FIGURE_GROUPS),
                        help="groups to draw (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="side of the input image in pixels (default: %(default)s)")
    parser.add_argument("--dpi", type=int, default=DPI, help="PNG resolution (default: %(default)s)")
    args = parser.parse_args(argv)
    for group in args.groups:
        try:
            png, gif, residual = write_equivariance_figures(group, args.out, args.image_size, args.dpi)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{group}: equivariance law holds to {residual:.1e}; wrote {png} and {gif}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
