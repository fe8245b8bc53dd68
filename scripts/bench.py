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
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gcnn  # noqa: E402
import models  # noqa: E402
from gcnn.validation import check_choice, invalid  # noqa: E402
from repro.bench import compile_check, layers, training  # noqa: E402
from repro.bench.report import merge_previous, print_targets, write_report  # noqa: E402
from repro.bench.timing import time_command  # noqa: E402
from repro.device import describe_machine, device_slug, resolve_device  # noqa: E402

QUICK_ROUNDS = {"tiny": 7, "medium": 5, "cifar": 2}
FULL_ROUNDS = {"tiny": 21, "medium": 11, "cifar": 5}  # cifar: 3 rounds left medians at the mercy of one slow sample
EXPERIMENTS = ("paper_allcnnc", "paper_resnet44", "paper_resnet26", "rotmnist")  # one per model
PARTS = ("layers", "training", "compile")
# The demo writes into a fresh temporary folder: a finished multirun/demo would resume instantly.
E2E_COMMANDS = {"demo": ["make", "demo", "DEMO_DIR={tmp}/multirun", "DEMO_OUT={tmp}/results"],
                "test": ["make", "test"]}


def say(line: str) -> None:
    print(line, flush=True)


def run_bench(args: argparse.Namespace, device: torch.device) -> dict:
    """Measure what ``args`` asks for on ``device``: the results dict of :mod:`repro.bench.report`."""
    start, cpu = time.perf_counter(), device.type == "cpu"
    if not cpu:
        torch.backends.cudnn.benchmark = True     # the fastest conv algorithm per shape, as training does
    version = layers.escnn_version()
    meta = {**describe_machine(device), "escnn_version": version, "quick": args.quick, "options": vars(args),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": []}
    results: dict = {"meta": meta}
    if "layers" not in args.skip:
        if version is None:
            meta["notes"].append("escnn not installed: its column is skipped (see README: optional bench extra).")
        sizes = args.sizes or (["tiny", "medium"] if args.quick else list(layers.SIZES))
        rounds = {size: n if args.rounds is None else args.rounds
                  for size, n in (QUICK_ROUNDS if args.quick else FULL_ROUNDS).items()}
        say(f"layer overhead ({', '.join(sizes)}; escnn {'off' if version is None else 'on'})")
        results["layers"] = layers.bench_layers(layers.default_cases(sizes), device, rounds=rounds,
                                                min_sample_s=0.005 if args.quick else 0.02,
                                                with_escnn=version is not None, log=say)
    if "compile" not in args.skip:
        say("torch.compile: graph breaks of the G-layers")
        results["compile"] = {"layers": compile_check.check_layers()}
        if args.compile_models:
            say(f"torch.compile of every model ({args.compile_models})")
            backend = None if args.compile_models == "trace" else args.compile_models
            results["compile"]["models"] = compile_check.check_models(models.list_models(), args.groups,
                                                                      backend=backend, log=say)
    if "training" not in args.skip:
        experiments = args.experiments or (["rotmnist"] if args.quick else list(EXPERIMENTS))
        batch = args.train_batch or (32 if args.quick else None)
        say(f"training step ({', '.join(experiments)} x {', '.join(args.groups)}; batch {batch or 'of the config'})")
        cases = training.experiment_cases(experiments, args.groups, extra=args.override)
        results["training"] = training.add_speed_vs_plain(list(training.measure_cases(
            cases, device, steps=args.train_steps or (1 if cpu else 10), warmup=1 if cpu else 3, batch=batch,
            warmup_batch=16 if cpu else None, log=say)))
    if args.e2e:
        results["e2e"] = {}
        with tempfile.TemporaryDirectory(prefix="gcnn-e2e-") as tmp:
            for name, template in E2E_COMMANDS.items():
                command = [part.format(tmp=tmp) for part in template]
                say(f"end-to-end: {' '.join(command)}")
                results["e2e"][name] = time_command(command)
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny/medium layers, rotmnist only")
    p.add_argument("--out", default="results/bench", help="output folder (default: results/bench)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--sizes", nargs="+", choices=layers.SIZES, help="layer sizes (default: tiny medium with --quick)")
    p.add_argument("--rounds", type=int, help="timing rounds per layer case (default per size)")
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, help="training cases (default: all)")
    p.add_argument("--groups", nargs="+", default=list(gcnn.GROUP_NAMES), help="groups (default: all)")
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
    args = p.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads={args.threads} is not valid; expected an integer >= 1")
        for group in args.groups:
            check_choice("group", group, list(gcnn.GROUP_NAMES))
        for override in args.override:
            if "=" not in override:
                raise invalid("override", override, "key=value")
    except ValueError as exc:
        raise SystemExit(f"bench.py: error: {exc}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_bench(args, device)
    results["meta"]["command"] = shlex.join(["python", "scripts/bench.py", *argv])
    stem = device_slug(device) + ("-quick" if args.quick else "")   # a smoke run never overwrites a full one
    if args.merge:
        results = merge_previous(results, Path(args.out) / f"{stem}.json")
    md, js = write_report(results, args.out, stem)
    print_targets(results["targets"])
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
