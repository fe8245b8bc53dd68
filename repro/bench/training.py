"""Training steps of the experiment configs, composed as ``scripts/train.py`` composes them (model,
width, batch size, optimiser, augmentation, autocast, layout, compile), timed on synthetic data.
One step is the trainer's: augment, forward under autocast, float32 cross-entropy, backward,
gradient clipping, optimiser step."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import models
from gcnn.validation import check_choice, check_int
from repro.cost import FLOP_PER_MAC_TRAIN
from repro.sweeps import CIFAR_IMAGES
from repro.device import device_name, forward_in_layout, resolve_flag, resolve_speed_flags, to_channels_last

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


def _num_classes(config: Any) -> int:
    return 100 if config.data.get("name") == "cifar100" or config.data.get("format") == "cifar100" else 10


def build_network(case: TrainCase, config: Any) -> tuple[nn.Module, float]:
    """The case's model (on the CPU, float32) and the width multiplier it was built with."""
    m = config.model
    if case.network == "plain":
        return build_plain_same_macs(m.name, config.group.name, _num_classes(config), m.width, m.overrides)
    model = models.build_model(m.name, config.group.name, _num_classes(config),
                               in_channels=models.default_input_shape(m.name)[0], width=m.width, **dict(m.overrides))
    return model, m.width


def measure_case(case: TrainCase, device: torch.device, *, steps: int = 20, warmup: int = 3,
                 batch: int | None = None, warmup_batch: int | None = None,
                 compile_backend: str = "inductor") -> dict:
    """Time ``steps`` training steps of ``case`` on synthetic data after ``warmup`` untimed ones (the
    first compiles a compiled case). ``batch`` overrides the config's batch size; ``warmup_batch`` lets a
    slow CPU warm an eager case up on fewer images (a compiled one would compile again)."""
    from repro.train.config import build_option
    from repro.train.optim import build_optimizer
    from repro.train.reproducible import determinism

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
    model = model.to(device).train()
    if channels_last:                        # as the trainer: 4-D weights (the plain twin's) and the input batch
        to_channels_last(model)
    optimizer = build_optimizer(model.parameters(), config.optim)
    augment = build_option("augment", config.augment)
    # as the trainer: static shapes, one graph per shape family
    train_model = torch.compile(model, backend=compile_backend, dynamic=False) if compiled else model
    data_x = torch.randn(batch * (steps + warmup), *shape, device=device)   # every step on new images
    data_y = torch.randint(0, _num_classes(config), (len(data_x),), device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    def step(index: int, size: int) -> None:
        """The trainer's step on ``size`` images: augment, autocast forward, float32 loss, backward, clip, update."""
        images = slice(index * batch, index * batch + size)
        logits = forward_in_layout(train_model, augment(data_x[images], generator), amp_dtype, channels_last)
        loss = F.cross_entropy(logits.float(), data_y[images], reduction="sum",
                               label_smoothing=config.label_smoothing) / size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

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
        "optim": {k: v for k, v in optimizer.param_groups[0].items() if k != "params"},
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
