"""The benchmark (``make bench``): every part measured side by side in one process, then the report."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

import gcnn
import models
from repro.device import device_slug

from . import compile_check, layers, training
from .report import merge_previous, new_results, write_report
from .timing import time_command

EXPERIMENTS = ("paper_allcnnc", "paper_resnet44", "paper_resnet26", "rotmnist")  # one per model
PARTS = ("layers", "training", "compile")
# The demo writes into a fresh temporary folder: a finished multirun/demo would resume instantly.
E2E_COMMANDS = {"demo": ["make", "demo", "DEMO_DIR={tmp}/multirun", "DEMO_OUT={tmp}/results"],
                "test": ["make", "test"]}


def run_bench(out_dir: str | Path, device: torch.device, command: str, *, quick: bool = False,
              skip: Sequence[str] = (), groups: Sequence[str] = gcnn.GROUP_NAMES, overrides: Sequence[str] = (),
              compile_models: str | None = None, e2e: bool = False, merge: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Measure the parts not in ``skip`` (``quick``: small sizes, rotmnist only) and write
    ``<out_dir>/<device slug>[-quick].md`` and ``.json``; ``merge`` keeps the sections of the
    earlier report that this run does not measure. ``overrides`` apply to every training case."""
    from repro.train.reproducible import determinism   # repro.train loads omegaconf: only when run
    start, cpu = time.perf_counter(), device.type == "cpu"
    version = layers.escnn_version()
    results = new_results(device, command, escnn_version=version, quick=quick)
    if "layers" not in skip:
        if version is None:
            results["meta"]["notes"].append(
                "escnn not installed: its column is skipped (see README: optional bench extra).")
        with determinism(False):   # the trainer's cudnn flags (benchmark on), restored after
            results["layers"] = layers.bench_layers(device, quick=quick, with_escnn=version is not None, log=log)
    if "compile" not in skip:
        log("torch.compile: graph breaks of the G-layers")
        results["compile"] = {"layers": compile_check.check_layers()}
        if compile_models:
            log(f"torch.compile of every model ({compile_models})")
            backend = None if compile_models == "trace" else compile_models
            results["compile"]["models"] = compile_check.check_models(models.list_models(), groups,
                                                                      backend=backend, log=log)
    if "training" not in skip:
        experiments, batch = (["rotmnist"], 32) if quick else (EXPERIMENTS, None)
        log(f"training step ({', '.join(experiments)} x {', '.join(groups)}; batch {batch or 'of the config'})")
        cases = training.experiment_cases(experiments, groups, extra=overrides)
        results["training"] = training.add_speed_vs_plain(list(training.measure_cases(
            cases, device, steps=1 if cpu else 10, warmup=1 if cpu else 3, batch=batch,
            warmup_batch=16 if cpu else None, log=log)))
    if e2e:
        results["e2e"] = {}
        with tempfile.TemporaryDirectory(prefix="gcnn-e2e-") as tmp:
            for name, template in E2E_COMMANDS.items():
                e2e_command = [part.format(tmp=tmp) for part in template]
                log(f"end-to-end: {' '.join(e2e_command)}")
                results["e2e"][name] = time_command(e2e_command)
    results["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
    stem = device_slug(device) + ("-quick" if quick else "")   # a smoke run never overwrites a full one
    if merge:
        results = merge_previous(results, Path(out_dir) / f"{stem}.json")
    md, js = write_report(results, out_dir, stem)
    log(f"wrote {md} and {js}")
    return results
