"""Benchmark G-conv overhead, the experiments' training step and end-to-end times (``make bench``).

    python scripts/bench.py --quick                   # smoke run, about a minute on a 2-core CPU
    python scripts/bench.py                           # full run -> results/bench/<device>.md/.json
    python scripts/bench.py --e2e --skip layers training compile --merge   # add `make demo`/`make test` times

The training cases are the experiment configs composed as ``scripts/train.py`` composes them;
``--override key=value`` changes all of them. The GPU check of a fresh machine: ``scripts/gpu_check.py``.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import gcnn
from gcnn.validation import check_choice, invalid
from repro.bench.report import print_targets
from repro.bench.suite import PARTS, run_bench
from repro.device import resolve_device


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny/medium layers, rotmnist only")
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--groups", nargs="+", default=list(gcnn.GROUP_NAMES), help="groups (default: all)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every training case, e.g. channels_last=true (repeatable)")
    p.add_argument("--compile-models", metavar="BACKEND",
                   help="check torch.compile of every model: 'trace' (graph breaks) or a backend, e.g. inductor")
    p.add_argument("--e2e", action="store_true", help="also time `make demo` and `make test` (slow)")
    p.add_argument("--skip", nargs="+", default=[], choices=PARTS)
    p.add_argument("--merge", action="store_true",
                   help="keep the sections of an existing report that this run does not measure")
    args = p.parse_args(argv)
    try:
        device = resolve_device(args.device)
        for group in args.groups:
            check_choice("group", group, list(gcnn.GROUP_NAMES))
        for override in args.override:
            if "=" not in override:
                raise invalid("override", override, "key=value")
    except ValueError as exc:
        raise SystemExit(f"bench.py: error: {exc}") from None
    results = run_bench(args.out, device, shlex.join(["python", "scripts/bench.py", *argv]), quick=args.quick,
                        skip=args.skip, groups=args.groups, overrides=args.override,
                        compile_models=args.compile_models, e2e=args.e2e, merge=args.merge,
                        log=lambda line: print(line, flush=True))
    print_targets(results["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
