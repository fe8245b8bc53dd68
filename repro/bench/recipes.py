"""Epoch time of the paper's training recipes on synthetic CIFAR-shaped data.

A recipe is a G-CNN with its optimizer and augmentation; each is measured next
to the z2 network of the same architecture widened until its MACs per image
match, so the ratio of the two throughputs isolates what the G-conv machinery
(expansion, 5-D reshapes, group batch norm) costs beyond the arithmetic.
Each step draws a batch from a synthetic on-device dataset ``(N, 3, 32, 32)``,
augments it and takes one optimizer step; epoch time is ``ceil(N / batch)``
steps at the measured median step time (extrapolated when fewer steps ran).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import models
from repro.data import build_augment

from .machine import autocast
from .timing import time_calls
from .training import build_bench_model

__all__ = ["Recipe", "RECIPES", "mac_matched_width", "measure_recipe", "bench_recipes"]

CIFAR_TRAIN_IMAGES = 50_000


@dataclass(frozen=True)
class Recipe:
    """Architecture, group, SGD hyper-parameters and augmentation of one paper recipe."""

    arch: str
    group: str
    lr: float
    momentum: float
    weight_decay: float
    augment: str = "crop_flip"


RECIPES: dict[str, Recipe] = {
    # ResNets: SGD lr 0.05, momentum 0.9 (paper); weight decay not stated, 5e-4 here.
    "resnet44-p4m": Recipe("resnet44", "p4m", lr=0.05, momentum=0.9, weight_decay=5e-4),
    # All-CNN-C: reference-script defaults lr 0.01, momentum 0.9, weight decay 1e-3.
    "allcnnc-p4m": Recipe("allcnnc", "p4m", lr=0.01, momentum=0.9, weight_decay=1e-3),
}


def mac_matched_width(arch: str, group: str, reference_group: str = "z2") -> float:
    """Width multiplier making ``reference_group``'s network cost the MACs of ``group``'s."""
    shape = models.default_input_shape(arch)
    target = models.count_macs(build_bench_model(arch, group)[0], shape)
    width = 1.0
    for _ in range(3):  # MACs grow ~ width^2; rounding of channel counts needs a couple of refinements
        macs = models.count_macs(build_bench_model(arch, reference_group, width)[0], shape)
        width *= math.sqrt(target / macs)
    return width


def _recipe_step(recipe: Recipe, group: str, width: float, device: torch.device, batch: int, pool: int,
                 amp: str, seed: int) -> tuple[Callable[[], None], int, int]:
    torch.manual_seed(seed)
    model, shape = build_bench_model(recipe.arch, group, width)
    macs, params = models.count_macs(model, shape), models.count_parameters(model)
    model = model.to(device).train()
    data_x = torch.randn(pool, *shape, device=device)
    data_y = torch.randint(0, 10, (pool,), device=device)
    augment = build_augment(recipe.augment)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    position = 0

    def step() -> None:
        nonlocal position
        index = (torch.arange(batch, device=device) + position) % pool
        position = (position + batch) % pool
        x = augment(data_x[index])
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), data_y[index])
        loss.backward()
        optimizer.step()
    return step, macs, params


def measure_recipe(recipe: Recipe, group: str, width: float, device: torch.device, *, batch: int = 128,
                   steps: int = 20, warmup: int = 2, amp: str = "none", seed: int = 0) -> dict:
    """Median step time, images/s and (extrapolated) epoch time of one network."""
    pool = min(CIFAR_TRAIN_IMAGES, batch * (steps + warmup))
    step, macs, params = _recipe_step(recipe, group, width, device, batch, pool, amp, seed)
    for _ in range(warmup):
        step()
    samples = [time_calls(step, 1, device) for _ in range(steps)]
    step_s = statistics.median(samples)
    steps_per_epoch = math.ceil(CIFAR_TRAIN_IMAGES / batch)
    return {"arch": recipe.arch, "group": group, "width": width, "batch": batch, "steps": steps,
            "params": params, "macs_per_image": macs, "step_s": step_s, "step_samples_s": samples,
            "images_per_s": batch / step_s, "epoch_s": steps_per_epoch * step_s,
            "epoch_extrapolated": steps < steps_per_epoch}


def bench_recipes(names: list[str], device: torch.device, *, batch: int = 128, steps: int = 20,
                  warmup: int = 2, amp: str = "none", log: Callable[[str], None] = print) -> list[dict]:
    """Each recipe and its MAC-matched z2 network, with the throughput ratio G-CNN / z2."""
    rows = []
    for name in names:
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; expected one of {list(RECIPES)}")
        recipe = RECIPES[name]
        gcnn_row = measure_recipe(recipe, recipe.group, 1.0, device, batch=batch, steps=steps,
                                  warmup=warmup, amp=amp)
        z2_row = measure_recipe(recipe, "z2", mac_matched_width(recipe.arch, recipe.group), device,
                                batch=batch, steps=steps, warmup=warmup, amp=amp)
        row = {"recipe": name, "gcnn": gcnn_row, "z2_mac_matched": z2_row,
               "speed_vs_z2": gcnn_row["images_per_s"] / z2_row["images_per_s"]}
        rows.append(row)
        log(f"  {name:13s} {gcnn_row['images_per_s']:8.1f} img/s, epoch {gcnn_row['epoch_s']:8.1f} s; "
            f"z2 same MACs {z2_row['images_per_s']:8.1f} img/s; ratio {row['speed_vs_z2']:.3f}")
    return rows
