"""Learning-rate schedules: each is the ``_target_`` of a YAML under ``configs/schedule/`` and
returns the factor of the base lr at optimiser step ``step`` (0-based). Each takes
``warmup_epochs``: a linear ramp over the first ``warmup_epochs * steps_per_epoch`` steps."""
from __future__ import annotations

import math
from typing import Callable, Sequence

__all__ = ["constant", "step_decay", "cosine"]

Schedule = Callable[[int], float]


def _with_warmup(factor: Schedule, warmup_epochs: float, steps_per_epoch: int) -> Schedule:
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return factor
    return lambda step: factor(step) * min(1.0, (step + 1) / warmup_steps)


def constant(*, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0) -> Schedule:
    """1 at every step (after the warm-up)."""
    return _with_warmup(lambda step: 1.0, warmup_epochs, steps_per_epoch)


def step_decay(*, steps_per_epoch: int, epochs: int, milestones: Sequence[int] = (), gamma: float = 0.1,
               warmup_epochs: float = 0.0) -> Schedule:
    """The lr is multiplied by ``gamma`` after each epoch ``m`` of ``milestones`` (from epoch ``m + 1`` on)."""
    milestones = list(milestones)
    return _with_warmup(lambda step: gamma ** sum(step // steps_per_epoch >= m for m in milestones),
                        warmup_epochs, steps_per_epoch)


def cosine(*, steps_per_epoch: int, epochs: int, min_lr_factor: float = 0.0,
           warmup_epochs: float = 0.0) -> Schedule:
    """Half a cosine from 1 to ``min_lr_factor`` over all ``epochs * steps_per_epoch`` steps."""
    total = max(1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        return min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
    return _with_warmup(factor, warmup_epochs, steps_per_epoch)
