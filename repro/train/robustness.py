"""Test error of a trained model on transformed test sets: each of the 8 elements of p4m
(rotations by multiples of 90 degrees, with and without a mirror) and, for small images
such as the rotated digits, rotations every 15 degrees.

A p4m-CNN's error should be flat over all 8 elements, a p4-CNN's over the 4 rotations,
and a plain CNN's rises wherever the training data has no such images.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

import gcnn

__all__ = ["P4M_ELEMENT_NAMES", "rotate_images", "robustness_errors"]

# Element 4*m + r of p4m: rotate by r quarter turns, then mirror m times (gcnn.groups).
P4M_ELEMENT_NAMES = ("e", "r", "r2", "r3", "m", "mr", "mr2", "mr3")

Evaluate = Callable[[Callable[[torch.Tensor], torch.Tensor]], float]


def rotate_images(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``(B, C, H, W)`` rotated counter-clockwise by ``degrees`` about the image centre
    (bilinear, zeros outside), the same sense as ``torch.rot90``."""
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # affine_grid maps output (x right, y down) to input coordinates: rotate back.
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = torch.nn.functional.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def robustness_errors(evaluate: Evaluate, *, rotations: bool) -> dict[str, dict[str, float]]:
    """``{"p4m": {element name: error %}, "rotation": {"0": error %, "15": ...}}``.

    ``evaluate(transform)`` returns the test error (%) of the model on the test images
    passed through ``transform``; ``rotation`` is present only when ``rotations``.
    """
    group = gcnn.get_group("p4m")
    out = {"p4m": {name: evaluate(lambda x, g=g: group.transform_image(x, g))
                   for g, name in enumerate(P4M_ELEMENT_NAMES)}}
    if rotations:
        out["rotation"] = {str(angle): evaluate(lambda x, a=angle: rotate_images(x, a))
                           for angle in range(0, 360, 15)}
    return out
