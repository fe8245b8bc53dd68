"""The whole benchmark as one run: options, what each part measures, results dict.

``run_bench(BenchOptions(...))`` measures, in one process: layer overhead
(gcnn vs ``conv2d`` [vs escnn]), the graph-break check of the G-layers,
training throughput per arch x group, and optionally the synthetic recipes,
the models' ``torch.compile`` check and the end-to-end commands. The result
feeds :func:`repro.bench.report.write_report`.
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

from . import compile_check, e2e, layers, recipes, training
from .escnn_anchor import escnn_version
from .machine import AMP_CHOICES, describe_machine
from .variants import VARIANTS

__all__ = ["BenchOptions", "run_bench", "QUICK_ROUNDS", "FULL_ROUNDS"]

QUICK_ROUNDS = {"tiny": 7, "medium": 5, "cifar": 2}
FULL_ROUNDS = {"tiny": 21, "medium": 11, "cifar": 5}  # cifar: 3 rounds left medians at the mercy of one slow sample


@dataclass
class BenchOptions:
    """What to measure. ``quick`` shrinks everything to a smoke run (tiny/medium layers, rotmnist)."""

    quick: bool = False
    sizes: list[str] | None = None            # default: tiny+medium (quick) or all
    rounds: int | None = None                 # override the per-size round counts
    min_sample_s: float | None = None         # default: 5 ms (quick) or 20 ms per timed sample
    escnn: bool = True                        # include escnn when installed
    variants: list[str] = field(default_factory=list)
    archs: list[str] | None = None            # default: rotmnist (quick) or every model
    groups: list[str] = field(default_factory=lambda: list(gcnn.GROUP_NAMES))
    train_batch: int | None = None            # default: 32 (quick) or 128
    train_steps: int | None = None            # default: 1 on CPU (minutes per step), 10 on CUDA
    train_warmup_batch: int | None = None     # default: 16 on CPU, the full batch on CUDA
    synthetic_train: list[str] = field(default_factory=list)
    synthetic_steps: int | None = None        # default: 20 on CUDA, 2 on CPU
    compile_models: str | None = None         # None: skip; "trace": graph breaks only; else a backend
    e2e: bool = False
    amp: str = "none"
    skip: list[str] = field(default_factory=list)   # any of "layers", "training", "compile"

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"unknown amp mode {self.amp!r}; expected one of {list(AMP_CHOICES)}")
        unknown = sorted(set(self.skip) - {"layers", "training", "compile"})
        if unknown:
            raise ValueError(f"unknown part(s) to skip {unknown}; expected any of ['compile', 'layers', 'training']")
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; expected any of {sorted(VARIANTS)}")
        for arch in self.archs or []:
            models.get_spec(arch)
        for group in self.groups:
            if group not in gcnn.GROUP_NAMES:
                raise ValueError(f"unknown group {group!r}; expected one of {list(gcnn.GROUP_NAMES)}")


def _run_layers(opts: BenchOptions, device: torch.device, with_escnn: bool, log: Callable) -> list[dict]:
    sizes = opts.sizes or (["tiny", "medium"] if opts.quick else list(layers.SIZES))
    rounds = dict(QUICK_ROUNDS if opts.quick else FULL_ROUNDS)
    if opts.rounds is not None:
        rounds = {size: opts.rounds for size in rounds}
    min_sample = opts.min_sample_s if opts.min_sample_s is not None else (0.005 if opts.quick else 0.02)
    log(f"layer overhead ({', '.join(sizes)}; escnn {'on' if with_escnn else 'off'})")
    return layers.bench_layers(layers.default_cases(sizes), device, rounds=rounds, min_sample_s=min_sample,
                               amp=opts.amp, with_escnn=with_escnn,
                               variants={n: VARIANTS[n] for n in opts.variants}, log=log)


def _run_training(opts: BenchOptions, device: torch.device, log: Callable) -> list[dict]:
    archs = opts.archs or (["rotmnist"] if opts.quick else models.list_models())
    batch = opts.train_batch or (32 if opts.quick else 128)
    warmup_batch = opts.train_warmup_batch or (16 if device.type == "cpu" else None)
    log(f"training throughput (batch {batch}; {', '.join(archs)} x {', '.join(opts.groups)})")
    steps = opts.train_steps or (1 if device.type == "cpu" else 10)
    warmup = 1 if device.type == "cpu" else 3
    return training.bench_training(archs, opts.groups, device, batch=batch, steps=steps, warmup=warmup,
                                   warmup_batch=warmup_batch, amp=opts.amp, log=log)


def _run_compile(opts: BenchOptions, log: Callable) -> dict:
    log("torch.compile: graph breaks of the G-layers")
    result = {"layers": compile_check.check_layers()}
    if opts.compile_models:
        backend = None if opts.compile_models == "trace" else opts.compile_models
        log(f"torch.compile of every model ({opts.compile_models})")
        result["models"] = compile_check.check_models(opts.archs or models.list_models(), opts.groups,
                                                      backend=backend, log=log)
    return result


def run_bench(opts: BenchOptions, device: torch.device, log: Callable[[str], None] = print) -> dict:
    """Measure everything ``opts`` asks for on ``device``; returns the results dict of
    :mod:`repro.bench.report` (``meta``, ``layers``, ``training``, ...)."""
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # pick the fastest conv algorithm per shape, as training does
    version = escnn_version()
    meta = {**describe_machine(device), "escnn_version": version, "amp": opts.amp, "quick": opts.quick,
            "options": asdict(opts), "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "notes": []}
    if opts.escnn and version is None:
        meta["notes"].append("escnn not installed: its column is skipped (see README: optional bench extra).")
    results: dict = {"meta": meta}
    if "layers" not in opts.skip:
        results["layers"] = _run_layers(opts, device, opts.escnn and version is not None, log)
    if "compile" not in opts.skip:
        results["compile"] = _run_compile(opts, log)
    if "training" not in opts.skip:
        results["training"] = _run_training(opts, device, log)
    if opts.synthetic_train:
        steps = opts.synthetic_steps or (20 if device.type == "cuda" else 2)
        log(f"synthetic recipes ({', '.join(opts.synthetic_train)}; {steps} steps)")
        results["recipes"] = recipes.bench_recipes(opts.synthetic_train, device, steps=steps, amp=opts.amp, log=log)
    if opts.e2e:
        results["e2e"] = {}
        with tempfile.TemporaryDirectory(prefix="gcnn-e2e-") as tmp:
            for name, template in e2e.E2E_COMMANDS.items():
                command = [part.format(tmp=tmp) for part in template]
                log(f"end-to-end: {' '.join(command)}")
                results["e2e"][name] = e2e.time_command(command)
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    return results
