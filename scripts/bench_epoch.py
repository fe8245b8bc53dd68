"""Rotated-MNIST epoch time on this CPU: the trainer beside a bare PyTorch loop of the same model and
batch, per Table 1 network, and whether torch.compile wins (``make bench-epoch``, about 20 minutes).

    python scripts/bench_epoch.py                          # -> results/bench/cpu-rotmnist-epoch.md/.json
    python scripts/bench_epoch.py --networks P4CNN --train-images 1200 --test-images 5000 --out /tmp/b
"""
from __future__ import annotations

import argparse
import shlex
import sys

from repro.bench.epoch import run_epoch_bench
from repro.bench.report import print_targets


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--networks", nargs="+", help="Table 1 names, e.g. Z2CNN P4CNN (default: all)")
    p.add_argument("--train-images", type=int, default=12_000, help="synthetic training images (MNIST-rot: 12,000)")
    p.add_argument("--test-images", type=int, default=50_000, help="synthetic test images (MNIST-rot: 50,000)")
    args = p.parse_args(argv)
    try:
        results = run_epoch_bench(args.out, shlex.join(["python", "scripts/bench_epoch.py", *argv]),
                                  networks=args.networks, n_train=args.train_images, n_test=args.test_images,
                                  log=lambda line: print(line, flush=True))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_targets(results["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
