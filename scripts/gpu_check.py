"""One command for a fresh GPU machine (``make gpu-check``): the CUDA-path tests, the training step
of the paper recipes against the plain same-MAC networks (compile off and on), and two-epoch trainer
runs on synthetic CIFAR-format data. Writes ``<out>/<gpu>.md`` and ``.json``.

    python3 scripts/gpu_check.py --out results/bench          # on the GPU: 247 s on an H100 (eager defaults)
    python3 scripts/gpu_check.py --dry --out /tmp/check       # every code path on the CPU, < 1 minute

Needs no ``make`` and no venv: torch, numpy, pytest and (for the configs) hydra-core and omegaconf
on ``PYTHONPATH``; see the README's "Performance" section.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from repro.bench.gpu import PARTS, CheckOptions, run_check
from repro.bench.report import print_targets


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--dry", action="store_true", help="CPU smoke run at toy sizes (what the test suite runs)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: auto; cpu with --dry)")
    p.add_argument("--parts", nargs="+", choices=PARTS, help="what to run (default: all)")
    p.add_argument("--run-override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override of the two-epoch runs, e.g. compile=true (repeatable)")
    p.add_argument("--bench-override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override of every bench case, e.g. channels_last=true (repeatable)")
    args = p.parse_args(argv)
    opts = CheckOptions.from_cli(args.dry, args.device, args.parts or (), args.run_override, args.bench_override)
    try:
        results = run_check(opts, args.out, shlex.join(["python3", "scripts/gpu_check.py", *argv]),
                            log=lambda line: print(line, flush=True))
    except ValueError as exc:
        raise SystemExit(f"gpu_check.py: error: {exc}") from None
    print_targets(results["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
