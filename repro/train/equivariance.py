"""Measured invariance of a trained classifier under the group acting on its input."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

import gcnn
import models

__all__ = ["equivariance_group", "measure_equivariance", "full_precision"]


def equivariance_group(group: str) -> str:
    """The group whose transforms are measured: the run's own group, or ``p4m`` for
    ``z2`` (how far a plain CNN is from rotation/flip invariance)."""
    return "p4m" if group == "z2" else group


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """TF32 off for CUDA matmuls and convolutions inside (restored after): a measurement
    of ~1e-6 must not drown in TF32's ~1e-3 round-off."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
def measure_equivariance(model: nn.Module, images: torch.Tensor, group: str,
                         batch_size: int = 256) -> float:
    """Mean over ``images`` ``(N, C, H, W)`` of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``
    over every element ``g`` of ``group`` (:func:`gcnn.equivariance_error`), in eval
    mode, float32, no autocast and no TF32; the model's modes are restored afterwards."""
    if images.shape[0] == 0:
        return float("nan")
    with models.evaluating(model), full_precision():
        total = sum(gcnn.equivariance_error(model, chunk.float(), group, invariant=True, reduction="mean")
                    * chunk.shape[0] for chunk in images.split(batch_size))
    return total / images.shape[0]
