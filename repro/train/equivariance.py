"""Measured invariance of a trained classifier under the group acting on its input."""
from __future__ import annotations

import torch
from torch import nn

import models

__all__ = ["equivariance_group", "measure_equivariance"]


def equivariance_group(group: str) -> str:
    """The group whose transforms are measured: the run's own group, or ``p4m`` for
    ``z2`` (how far a plain CNN is from rotation/flip invariance)."""
    return "p4m" if group == "z2" else group


@torch.no_grad()
def measure_equivariance(model: nn.Module, images: torch.Tensor, group: str,
                         batch_size: int = 256) -> float:
    """Mean over ``images`` ``(N, C, H, W)`` of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``
    over every element ``g`` of ``group``, in eval mode and float32 (no autocast).

    Uses :func:`models.invariance_error` on chunks of ``batch_size`` images; the
    model's train/eval mode is restored afterwards.
    """
    if images.shape[0] == 0:
        return float("nan")
    with models.evaluating(model):
        total = sum(models.invariance_error(model, chunk.float(), group) * chunk.shape[0]
                    for chunk in images.split(batch_size))
    return total / images.shape[0]
