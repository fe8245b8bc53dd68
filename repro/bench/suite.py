"""The whole benchmark as one run: options, what each part measures, results dict.

``run_bench(BenchOptions(...), device)`` measures, in one process: layer overhead
(gcnn vs ``conv2d`` [vs escnn]), the graph-break check of the G-layers, the training
step of the experiment configs (with the plain same-MAC networks), and optionally the
models' ``torch.compile`` check and the end-to-end commands. The result feeds
:func:`repro.bench.report.write_report`.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

import torch

import gcnn
import models
from gcnn.validation import check_choice, invalid
from repro.device import AMP_DTYPES, describe_machine

from . import compile_check, layers, training
from .escnn_anchor import escnn_version
from .timing import time_command

QUICK_ROUNDS = {"tiny": 7, "medium": 5, "cifar": 2}
FULL_ROUNDS = {"tiny": 21, "medium": 11, "cifar": 5}  # cifar: 3 rounds left medians at the mercy of one slow sample
EXPERIMENTS = ("paper_allcnnc", "paper_resnet44", "paper_resnet26", "rotmnist")  # one per model
PARTS = ("layers", "training", "compile")
# The demo writes into a fresh temporary folder: a finished multirun/demo would resume instantly.
E2E_COMMANDS = {"demo": ["make", "demo", "DEMO_DIR={tmp}/multirun", "DEMO_OUT={tmp}/results"],
                "test": ["make", "test"]}


@dataclass
class BenchOptions:
    """What to measure. ``quick`` shrinks everything to a smoke run (tiny/medium layers, rotmnist)."""

    quick: bool = False
    sizes: list[str] | None = None            # default: tiny+medium (quick) or all
    rounds: int | None = None                 # override the per-size round counts
    experiments: list[str] | None = None      # default: rotmnist (quick) or one per model
    groups: list[str] = field(default_factory=lambda: list(gcnn.GROUP_NAMES))
    overrides: list[str] = field(default_factory=list)   # extra config overrides of every training case
    train_batch: int | None = None            # default: 32 (quick) or the config's batch size
    train_steps: int | None = None            # default: 1 on CPU (minutes per step), 10 on CUDA
    compile_models: str | None = None         # None: skip; "trace": graph breaks only; else a backend
    e2e: bool = False
    amp: str | None = None                    # layer benchmark autocast dtype (training: the config's)
    skip: list[str] = field(default_factory=list)   # any of PARTS

    def __post_init__(self) -> None:
        if self.amp is not None:
            check_choice("amp", self.amp, list(AMP_DTYPES))
        for part in self.skip:
            check_choice("skip", part, list(PARTS))
        for experiment in self.experiments or []:
            check_choice("experiment", experiment, list(EXPERIMENTS))
        for group in self.groups:
            check_choice("group", group, list(gcnn.GROUP_NAMES))
        for override in self.overrides:
            if "=" not in override:
                raise invalid("override", override, "key=value")


def _run_layers(opts: BenchOptions, device: torch.device, with_escnn: bool, log: Callable) -> list[dict]:
    sizes = opts.sizes or (["tiny", "medium"] if opts.quick else list(layers.SIZES))
    rounds = {size: n if opts.rounds is None else opts.rounds
              for size, n in (QUICK_ROUNDS if opts.quick else FULL_ROUNDS).items()}
    log(f"layer overhead ({', '.join(sizes)}; escnn {'on' if with_escnn else 'off'})")
    return layers.bench_layers(layers.default_cases(sizes), device, rounds=rounds,
                               min_sample_s=0.005 if opts.quick else 0.02, amp=opts.amp, with_escnn=with_escnn,
                               log=log)


def _run_training(opts: BenchOptions, device: torch.device, log: Callable) -> list[dict]:
    experiments = opts.experiments or (["rotmnist"] if opts.quick else list(EXPERIMENTS))
    batch = opts.train_batch or (32 if opts.quick else None)
    cpu = device.type == "cpu"
    log(f"training step ({', '.join(experiments)} x {', '.join(opts.groups)}; batch {batch or 'of the config'})")
    cases = training.experiment_cases(experiments, opts.groups, extra=opts.overrides)
    return training.bench_cases(cases, device, steps=opts.train_steps or (1 if cpu else 10), warmup=1 if cpu else 3,
                                batch=batch, warmup_batch=16 if cpu else None, log=log)


def _run_compile(opts: BenchOptions, log: Callable) -> dict:
    log("torch.compile: graph breaks of the G-layers")
    result = {"layers": compile_check.check_layers()}
    if opts.compile_models:
        backend = None if opts.compile_models == "trace" else opts.compile_models
        log(f"torch.compile of every model ({opts.compile_models})")
        result["models"] = compile_check.check_models(models.list_models(), opts.groups, backend=backend, log=log)
    return result


def _run_e2e(log: Callable) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="gcnn-e2e-") as tmp:
        for name, template in E2E_COMMANDS.items():
            command = [part.format(tmp=tmp) for part in template]
            log(f"end-to-end: {' '.join(command)}")
            out[name] = time_command(command)
    return out


def run_bench(opts: BenchOptions, device: torch.device, log: Callable[[str], None] = print) -> dict:
    """Measure everything ``opts`` asks for on ``device``; returns the results dict of
    :mod:`repro.bench.report` (``meta``, ``layers``, ``training``, ...)."""
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # pick the fastest conv algorithm per shape, as training does
    version = escnn_version()
    meta = {**describe_machine(device), "escnn_version": version, "quick": opts.quick, "options": asdict(opts),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": []}
    if version is None and "layers" not in opts.skip:
        meta["notes"].append("escnn not installed: its column is skipped (see README: optional bench extra).")
    results: dict = {"meta": meta}
    if "layers" not in opts.skip:
        results["layers"] = _run_layers(opts, device, version is not None, log)
    if "compile" not in opts.skip:
        results["compile"] = _run_compile(opts, log)
    if "training" not in opts.skip:
        results["training"] = _run_training(opts, device, log)
    if opts.e2e:
        results["e2e"] = _run_e2e(log)
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    return results
