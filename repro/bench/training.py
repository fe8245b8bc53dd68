"""Training-step throughput of every (architecture, group) on synthetic data.

One step = forward, cross-entropy, backward, SGD update, on a fixed random
batch ``(B, C, H, W)`` of the architecture's input shape. Reported per model:
images/s, MACs per image (``models.count_macs``), achieved GFLOP/s (a training
step counted as 3 passes of 2 FLOP per MAC) and peak memory of a step:
``torch.cuda.max_memory_allocated`` on CUDA; on CPU, where torch has no
allocator statistics, the bytes of the tensors autograd saves for backward
plus parameters, gradients and momentum (the step's live tensors).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

import models

from .machine import autocast
from .timing import synchronize, time_calls

__all__ = ["TrainResult", "build_bench_model", "make_train_step", "saved_tensor_bytes",
           "measure_training", "bench_training", "FLOP_PER_MAC_TRAIN"]

FLOP_PER_MAC_TRAIN = 6  # forward + backward ~ 3 passes, 2 FLOP per multiply-accumulate


@dataclass
class TrainResult:
    """Throughput of one model; ``memory_kind`` says how ``peak_memory_bytes`` was measured."""

    arch: str
    group: str
    width: float
    batch: int
    steps: int
    params: int
    macs_per_image: int
    step_s: float
    step_samples_s: list[float]
    images_per_s: float
    gflops: float
    peak_memory_bytes: int
    memory_kind: str

    def as_dict(self) -> dict:
        return asdict(self)


def build_bench_model(arch: str, group: str, width: float = 1.0) -> tuple[nn.Module, tuple[int, int, int]]:
    """``models.build_model`` with the architecture's own input shape ``(C, H, W)``."""
    shape = models.default_input_shape(arch)
    return models.build_model(arch, group, in_channels=shape[0], width=width), shape


def make_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                    device: torch.device, amp: str = "none") -> Callable[[], torch.Tensor]:
    """A zero-argument full training step on the batch ``x (B, C, H, W)``, ``y (B,)``."""
    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss
    return step


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                       amp: str = "none") -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward pass."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device, amp):
        loss = F.cross_entropy(model(x), y)
    del loss
    return sum(storages.values())


def _peak_memory(model: nn.Module, step: Callable[[], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 device: torch.device, amp: str) -> tuple[int, str]:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return saved_tensor_bytes(model, x, y, device, amp) + 3 * param_bytes, "saved_for_backward+3x_params"


def measure_training(arch: str, group: str, device: torch.device, *, batch: int = 128, steps: int = 2,
                     warmup: int = 1, warmup_batch: int | None = None, width: float = 1.0, amp: str = "none",
                     seed: int = 0) -> TrainResult:
    """Images/s of ``steps`` timed training steps after ``warmup`` untimed ones.

    ``warmup_batch`` (default: ``batch``) lets a slow CPU warm up on a smaller batch.
    """
    if steps < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need steps >= 1, warmup >= 0, batch >= 1; got steps={steps!r}, "
                         f"warmup={warmup!r}, batch={batch!r}")
    torch.manual_seed(seed)
    model, shape = build_bench_model(arch, group, width)
    macs = models.count_macs(model, shape)
    model = model.to(device).train()
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    step = make_train_step(model, x, y, optimizer, device, amp)
    wb = batch if warmup_batch is None else min(batch, warmup_batch)
    warm = make_train_step(model, x[:wb], y[:wb], optimizer, device, amp)
    for _ in range(warmup):
        warm()
    samples = [time_calls(step, 1, device) for _ in range(steps)]
    memory, kind = _peak_memory(model, step, x, y, device, amp)
    step_s = statistics.median(samples)
    return TrainResult(arch, group, width, batch, steps, models.count_parameters(model), macs, step_s, samples,
                       batch / step_s, FLOP_PER_MAC_TRAIN * macs * batch / step_s / 1e9, memory, kind)


def bench_training(archs: Iterable[str], groups: Iterable[str], device: torch.device, *, batch: int = 128,
                   steps: int = 2, warmup: int = 1, warmup_batch: int | None = None, amp: str = "none",
                   log: Callable[[str], None] = print) -> list[dict]:
    """:func:`measure_training` for every ``arch x group``; each row also carries the
    ratio of its images/s to the z2 network of the same arch (when z2 was measured)."""
    rows = []
    for arch in archs:
        per_group = {}
        for group in groups:
            result = measure_training(arch, group, device, batch=batch, steps=steps, warmup=warmup,
                                      warmup_batch=warmup_batch, amp=amp)
            per_group[group] = result.as_dict()
            log(f"  {arch:9s} {group:4s} {result.images_per_s:9.1f} img/s  {result.macs_per_image / 1e6:8.1f} "
                f"MMAC/img  {result.gflops:7.1f} GFLOP/s  {result.peak_memory_bytes / 2**20:8.1f} MiB")
        z2 = per_group.get("z2")
        for row in per_group.values():
            row["speed_vs_z2"] = None if z2 is None else row["images_per_s"] / z2["images_per_s"]
            rows.append(row)
    return rows
