"""Benchmark G-conv overhead, training throughput and end-to-end times (``make bench``).

    python scripts/bench.py --quick                   # smoke run, < 1 min on a 2-core CPU
    python scripts/bench.py                           # full run -> results/bench/<device>.md/.json
    python scripts/bench.py --device cuda --amp bf16 --synthetic-train resnet44-p4m allcnnc-p4m
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.bench import BenchOptions, device_slug, resolve_device, run_bench, write_report  # noqa: E402
from repro.bench.recipes import RECIPES  # noqa: E402
from repro.bench.report import merge_previous, report_stem  # noqa: E402
from repro.bench.variants import VARIANTS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny/medium layers, rotmnist only")
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="autocast dtype")
    p.add_argument("--sizes", nargs="+", choices=["tiny", "medium", "cifar"], help="layer sizes")
    p.add_argument("--rounds", type=int, help="timing rounds per layer case (default per size)")
    p.add_argument("--no-escnn", action="store_true", help="skip the escnn column even if installed")
    p.add_argument("--variants", nargs="+", default=[], choices=sorted(VARIANTS),
                   help="prototype G-conv variants timed as extra candidates")
    p.add_argument("--archs", nargs="+", help="architectures for training/compile (default: all)")
    p.add_argument("--groups", nargs="+", default=["z2", "p4", "p4m"], help="groups (default: all)")
    p.add_argument("--train-batch", type=int, help="training batch (default 128; 32 with --quick)")
    p.add_argument("--train-steps", type=int, help="timed training steps per model (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--synthetic-train", nargs="*", choices=sorted(RECIPES),
                   help="epoch time of the paper's recipes on synthetic data (no names: all)")
    p.add_argument("--synthetic-steps", type=int, help="timed steps per recipe (default 20 CUDA / 2 CPU)")
    p.add_argument("--compile-models", metavar="BACKEND",
                   help="check torch.compile of every model: 'trace' (graph breaks) or a backend, e.g. inductor")
    p.add_argument("--e2e", action="store_true", help="also time `make demo` and `make test` (slow)")
    p.add_argument("--skip", nargs="+", default=[], choices=["layers", "training", "compile"])
    p.add_argument("--note", action="append", default=[], help="a line for the report's Notes (repeatable)")
    p.add_argument("--merge", action="store_true",
                   help="keep the sections of an existing report that this run does not measure")
    return p


def make_options(args: argparse.Namespace) -> BenchOptions:
    """The :class:`BenchOptions` of parsed arguments (ValueError for bad values)."""
    synthetic = list(RECIPES) if args.synthetic_train == [] else (args.synthetic_train or [])
    return BenchOptions(quick=args.quick, sizes=args.sizes, rounds=args.rounds, escnn=not args.no_escnn,
                        variants=args.variants, archs=args.archs, groups=args.groups,
                        train_batch=args.train_batch, train_steps=args.train_steps,
                        synthetic_train=synthetic, synthetic_steps=args.synthetic_steps,
                        compile_models=args.compile_models, e2e=args.e2e, amp=args.amp, skip=args.skip)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        opts = make_options(args)
    except ValueError as exc:
        raise SystemExit(f"bench.py: error: {exc}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_bench(opts, device, log=lambda line: print(line, flush=True))
    results["meta"]["notes"].extend(args.note)
    results["meta"]["command"] = shlex.join(["python", "scripts/bench.py", *(argv or sys.argv[1:])])
    stem = report_stem(device_slug(device), args.quick)
    if args.merge:
        results = merge_previous(results, Path(args.out) / f"{stem}.json")
    md, js = write_report(results, args.out, stem)
    for target in results["targets"]:
        print(f"{target['status']:>12}  {target['target']}: {target['measured']}")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
