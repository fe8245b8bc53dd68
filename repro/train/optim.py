"""The optimiser and the learning-rate schedule of a run, built from their YAML options
(``configs/optim/``, ``configs/schedule/``): the ``_target_`` called with the other keys."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from .config import build_option

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``optim._target_(params, **keys)``, e.g. ``torch.optim.SGD(params, lr=0.05, momentum=0.9, ...)``."""
    return build_option("optim", optim, params=params)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any], steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over the schedule's per-step factor, stepped once per optimiser step."""
    factor = build_option("schedule", schedule, steps_per_epoch=steps_per_epoch, epochs=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
