"""Optimizers (SGD with momentum, Adam) and per-step learning-rate schedules
(constant, step at epochs, cosine; each with an optional linear warm-up)."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from .config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "lr_factor", "build_scheduler"]


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (``momentum``, ``nesterov``) or Adam (``betas``); both with coupled L2 ``weight_decay``."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"optim={cfg.name!r} is not valid; expected one of ['sgd', 'adam']")


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).

    ``step``: after epoch ``m`` of ``milestones`` (1-based epochs, so epochs
    ``m+1, ...``) the lr is multiplied by ``gamma``. ``cosine``: half a cosine
    from 1 to ``min_lr_factor`` over all steps. Warm-up: linear ramp over the
    first ``warmup_epochs * steps_per_epoch`` steps.
    """
    epoch0 = step // steps_per_epoch  # epochs completed before this step
    if cfg.name == "constant":
        factor = 1.0
    elif cfg.name == "step":
        factor = cfg.gamma ** sum(epoch0 >= m for m in cfg.milestones)
    elif cfg.name == "cosine":
        progress = min(step / max(1, epochs * steps_per_epoch), 1.0)
        factor = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"schedule={cfg.name!r} is not valid; expected one of ['constant', 'step', 'cosine']")
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step; its state is the step count only."""
    schedule: Callable[[int], float] = lambda step: lr_factor(cfg, step, steps_per_epoch, epochs)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
