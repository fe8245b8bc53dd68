"""What ``result.json`` measures of a trained model: its equivariance error, and its test error
on the test set moved by each element of p4m and, for small images, rotated every 15 degrees
(a p4m-CNN's error should be flat over all 8 elements, a p4-CNN's over the rotations)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

import gcnn
import models

__all__ = ["equivariance_group", "measure_equivariance", "P4M_ELEMENT_NAMES", "robustness_errors"]

# Element 4*m + r of p4m: rotate by r quarter turns, then mirror m times (gcnn.groups).
P4M_ELEMENT_NAMES = ("e", "r", "r2", "r3", "m", "mr", "mr2", "mr3")


def equivariance_group(group: str) -> str:
    """The group whose transforms are measured: the run's own, or ``p4m`` for ``z2`` (how far a
    plain CNN is from rotation/flip invariance)."""
    return "p4m" if group == "z2" else group


@torch.no_grad()
def measure_equivariance(model: nn.Module, images: torch.Tensor, group: str, batch_size: int = 256) -> float:
    """Mean over ``images`` ``(N, C, H, W)`` of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf`` over
    ``group`` (:func:`gcnn.equivariance_error`), in eval mode and float32 with TF32 off (a ~1e-6
    measurement must not drown in TF32's ~1e-3 round-off); modes and flags are restored."""
    if images.shape[0] == 0:
        return float("nan")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with models.evaluating(model):
            total = sum(models.invariance_error(model, chunk.float(), group) * chunk.shape[0]
                        for chunk in images.split(batch_size))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return total / images.shape[0]


def robustness_errors(evaluate: Callable[[Callable[[torch.Tensor], torch.Tensor]], float], *,
                      rotations: bool) -> dict[str, dict[str, float]]:
    """``{"p4m": {element name: error %}, "rotation": {"0": error %, "15": ...}}`` (``rotation``
    only when ``rotations``); ``evaluate(transform)`` is the test error (%) of the model on the
    test images passed through ``transform``."""
    from repro.data.digits import rotate_images
    group = gcnn.get_group("p4m")
    out = {"p4m": {name: evaluate(lambda x, g=g: group.transform_image(x, g))
                   for g, name in enumerate(P4M_ELEMENT_NAMES)}}
    if rotations:
        out["rotation"] = {str(a): evaluate(lambda x, a=a: rotate_images(x, x.new_full(
            (len(x),), math.radians(a), dtype=torch.float64))) for a in range(0, 360, 15)}
    return out
