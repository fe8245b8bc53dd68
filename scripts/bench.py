"""Benchmark G-conv overhead, the experiments' training step and end-to-end times (``make bench``).

    python scripts/bench.py --quick                   # smoke run, about a minute on a 2-core CPU
    python scripts/bench.py                           # full run -> results/bench/<device>.md/.json
    python scripts/bench.py --e2e --skip layers training compile --merge   # add `make demo`/`make test` times

The training cases are the experiment configs (``configs/experiment/``) composed as
``scripts/train.py`` composes them; ``--override key=value`` changes all of them.
For the GPU check of a fresh machine see ``scripts/gpu_check.py``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.bench.report import merge_previous, write_report  # noqa: E402
from repro.bench.suite import EXPERIMENTS, PARTS, BenchOptions, run_bench  # noqa: E402
from repro.device import AMP_DTYPES, device_slug, resolve_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny/medium layers, rotmnist only")
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--amp", choices=AMP_DTYPES, help="autocast dtype of the layer benchmark (default: off)")
    p.add_argument("--sizes", nargs="+", choices=["tiny", "medium", "cifar"], help="layer sizes")
    p.add_argument("--rounds", type=int, help="timing rounds per layer case (default per size)")
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, help="training cases (default: all)")
    p.add_argument("--groups", nargs="+", default=["z2", "p4", "p4m"], help="groups (default: all)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every training case, e.g. channels_last=true (repeatable)")
    p.add_argument("--train-batch", type=int, help="training batch (default: the config's; 32 with --quick)")
    p.add_argument("--train-steps", type=int, help="timed training steps per case (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--compile-models", metavar="BACKEND",
                   help="check torch.compile of every model: 'trace' (graph breaks) or a backend, e.g. inductor")
    p.add_argument("--e2e", action="store_true", help="also time `make demo` and `make test` (slow)")
    p.add_argument("--skip", nargs="+", default=[], choices=PARTS)
    p.add_argument("--merge", action="store_true",
                   help="keep the sections of an existing report that this run does not measure")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads={args.threads} is not valid; expected an integer >= 1")
        opts = BenchOptions(quick=args.quick, sizes=args.sizes, rounds=args.rounds, experiments=args.experiments,
                            groups=args.groups, overrides=args.override, train_batch=args.train_batch,
                            train_steps=args.train_steps, compile_models=args.compile_models, e2e=args.e2e,
                            amp=args.amp, skip=args.skip)
    except ValueError as exc:
        raise SystemExit(f"bench.py: error: {exc}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_bench(opts, device, log=lambda line: print(line, flush=True))
    results["meta"]["command"] = shlex.join(["python", "scripts/bench.py", *argv])
    stem = device_slug(device) + ("-quick" if args.quick else "")   # a smoke run never overwrites a full one
    if args.merge:
        results = merge_previous(results, Path(args.out) / f"{stem}.json")
    md, js = write_report(results, args.out, stem)
    for record in results["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[record["met"]]
        print(f"{state:>12}  {record['name']}: {record['measured']}")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
