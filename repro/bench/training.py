"""Training steps of the experiment configs, composed as ``scripts/train.py`` composes them (model,
width, batch size, optimiser, augmentation, autocast, layout, compile), timed on synthetic data.
One step is the trainer's own (:func:`repro.train.step.train_step` after its augmentation): forward
under autocast, float32 cross-entropy, backward through the GradScaler, gradient clipping, optimiser
step, scheduler step."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

import models
from gcnn.validation import check_choice, check_int
from repro.cost import FLOP_PER_MAC_TRAIN
from repro.device import device_name, resolve_flag, resolve_speed_flags
from repro.sweeps import CIFAR_IMAGES

from .compile_check import dynamo_counts
from .plain import build_plain_same_macs
from .timing import time_calls

CIFAR_TRAIN_IMAGES = CIFAR_IMAGES[0]
# Dense bf16 tensor-core peak (TFLOP/s) by a lower-case part of the GPU's name; first match wins.
PEAK_BF16_TFLOPS = (("h200", 989.0), ("h100 pcie", 756.0), ("h100 nvl", 835.0), ("h100", 989.0))


@dataclass(frozen=True)
class TrainCase:
    """``overrides`` for ``repro.train.compose_config``; ``network``: the config's model
    (``gcnn``) or the plain z2 network with its MACs per image (``plain``)."""

    overrides: tuple[str, ...]
    network: str = "gcnn"

    def __post_init__(self) -> None:
        check_choice("network", self.network, ["gcnn", "plain"])

    @property
    def name(self) -> str:
        label = " ".join(o.split("=", 1)[1] if o.startswith(("experiment=", "group=")) else o
                         for o in self.overrides)
        return f"{label} plain same-MAC" if self.network == "plain" else label


def peak_bf16_tflops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`; None for a CPU or any other GPU."""
    name = device_name(device).lower() if device.type == "cuda" else ""
    return next((peak for part, peak in PEAK_BF16_TFLOPS if part in name), None)


def load_case_config(case: TrainCase) -> Any:
    """The validated :class:`repro.train.TrainConfig` of ``case.overrides``."""
    from repro.train import compose_config, load_config
    return load_config(compose_config(list(case.overrides)))


def build_network(case: TrainCase, config: Any) -> tuple[nn.Module, float]:
    """The case's model (on the CPU, float32) and the width multiplier it was built with."""
    m = config.model
    if case.network == "plain":
        return build_plain_same_macs(m.name, config.group.name, config.data.num_classes, m.width, m.overrides)
    model = models.build_model(m.name, config.group.name, config.data.num_classes,
                               in_channels=models.default_input_shape(m.name)[0], width=m.width, **dict(m.overrides))
    return model, m.width


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's keyword arguments as configured (``lr`` before the schedule scales it)."""
    group = optimizer.param_groups[0]
    return {k: group.get("initial_lr", v) if k == "lr" else v for k, v in group.items()
            if k not in ("params", "initial_lr")}


def measure_case(case: TrainCase, device: torch.device, *, steps: int = 20, warmup: int = 3,
                 batch: int | None = None, warmup_batch: int | None = None,
                 compile_backend: str = "inductor") -> dict:
    """Time ``steps`` training steps of ``case`` on synthetic data after ``warmup`` untimed ones (the
    first compiles a compiled case). ``batch`` overrides the config's batch size; ``warmup_batch`` lets a
    slow CPU warm an eager case up on fewer images (a compiled one would compile again)."""
    from repro.train.config import build_option
    from repro.train.reproducible import determinism
    from repro.train.step import build_train_step, prepare_model, train_step

    check_int("steps", steps, 1)
    check_int("warmup", warmup, 1)
    torch._dynamo.reset()                      # no compiled code from an earlier case
    before = dynamo_counts()
    config = load_case_config(case)
    batch = batch or config.batch_size
    torch.manual_seed(0)
    model, width = build_network(case, config)
    shape = models.default_input_shape(config.model.name)
    params, macs = models.count_parameters(model), models.count_macs(model, shape)
    compiled, channels_last = resolve_speed_flags(config.compile, config.channels_last, device)
    amp_dtype = config.amp_dtype if resolve_flag(config.amp, device, "amp") else None
    # the trainer's preparation (channels_last weights, static-shape compile) and its optimiser, schedule, scaler
    model, train_model, _ = prepare_model(model, device, channels_last=channels_last, compiled=compiled,
                                          compile_backend=compile_backend)
    run_step = build_train_step(config, model, train_model, device, amp_dtype=amp_dtype, channels_last=channels_last,
                                steps_per_epoch=math.ceil(CIFAR_TRAIN_IMAGES / batch))
    train_model.train()
    optimizer = run_step.optimizer
    augment = build_option("augment", config.augment)
    data_x = torch.randn(batch * (steps + warmup), *shape, device=device)   # every step on new images
    data_y = torch.randint(0, config.data.num_classes, (len(data_x),), device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    def step(index: int, size: int) -> None:
        """The trainer's augmentation and step on ``size`` images."""
        images = slice(index * batch, index * batch + size)
        train_step(run_step, augment(data_x[images], generator), data_y[images], 1.0 / size)

    warm = batch if compiled or warmup_batch is None else min(batch, warmup_batch)
    with determinism(config.deterministic):   # the trainer's cudnn flags
        first_s = time_calls(lambda: step(0, warm), 1, device)
        for index in range(1, warmup):
            step(index, warm)
        after_warmup = dynamo_counts()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        samples = [time_calls(lambda: step(warmup + i, batch), 1, device) for i in range(steps)]
        memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    after = dynamo_counts()
    step_s, peak = statistics.median(samples), peak_bf16_tflops(device)
    tflops = FLOP_PER_MAC_TRAIN * macs * batch / step_s / 1e12
    return {
        "case": case.name, "overrides": list(case.overrides), "network": case.network,
        "experiment": next((o.split("=", 1)[1] for o in case.overrides if o.startswith("experiment=")), None),
        "epochs": config.epochs, "arch": config.model.name,
        "group": "plain" if case.network == "plain" else config.group.name, "mac_group": config.group.name,
        "width": width, "params": params, "macs_per_image": macs, "amp_dtype": amp_dtype,
        "channels_last": channels_last, "compile": compiled,
        "compile_backend": compile_backend if compiled else None, "optimizer": type(optimizer).__name__,
        "optim": optimizer_settings(optimizer),
        "batch": batch, "steps": steps, "warmup": warmup,
        "step_s": step_s, "step_samples_s": samples, "first_step_s": first_s,
        "compile_s": max(0.0, first_s - step_s) if compiled else None,
        "images_per_s": batch / step_s, "epoch_s": math.ceil(CIFAR_TRAIN_IMAGES / batch) * step_s,
        "tflops": tflops, "percent_of_bf16_peak": None if peak is None else 100 * tflops / peak,
        "peak_memory_bytes": memory,
        "graphs": after["graphs"] - before["graphs"], "graph_breaks": after["graph_breaks"] - before["graph_breaks"],
        "recompiles": after["graphs"] - after_warmup["graphs"],
    }


def measure_cases(cases: Iterable[TrainCase], device: torch.device, *, log: Callable[[str], None] = print,
                  **kwargs: Any) -> Iterator[dict]:
    """:func:`measure_case` for every case, one log line each."""
    for case in cases:
        row = measure_case(case, device, **kwargs)
        log(f"  {row['case']:60s} {row['images_per_s']:9.1f} img/s  epoch {row['epoch_s']:8.1f} s  "
            f"{row['macs_per_image'] / 1e6:8.1f} MMAC/img  {row['tflops']:7.3f} TFLOP/s"
            + (f"  compile {row['compile_s']:.1f} s, {row['graphs']} graph(s), {row['graph_breaks']} break(s)"
               if row["compile"] else ""))
        yield row


def add_speed_vs_plain(rows: list[dict]) -> list[dict]:
    """Set each row's ``speed_vs_plain``: its images/s over those of the plain row with the same
    overrides (None when that row was not measured)."""
    plain = {tuple(r["overrides"]): r for r in rows if r["network"] == "plain"}
    for row in rows:
        base = plain.get(tuple(row["overrides"]))
        row["speed_vs_plain"] = None if base is None else row["images_per_s"] / base["images_per_s"]
    return rows


def experiment_cases(experiments: Iterable[str], groups: Iterable[str], extra: Iterable[str] = ()) -> list[TrainCase]:
    """Every ``experiment x group`` with ``extra`` overrides, each p4m case followed by its plain network."""
    cases = []
    for experiment in experiments:
        for group in groups:
            overrides = (f"experiment={experiment}", f"group={group}", *extra)
            cases += [TrainCase(overrides)] + ([TrainCase(overrides, "plain")] if group == "p4m" else [])
    return cases
