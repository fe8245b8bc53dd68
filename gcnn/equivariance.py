"""Measured equivariance of any module under a group acting on its input.

For a module ``f`` and every group element ``g`` this compares ``f(g x)`` with
``g f(x)``: ``g`` acts on an image ``(B, C, H, W)`` by moving the plane
(:meth:`Group.transform_image`) and on a G-feature map ``(B, C, G, H, W)`` by
moving the plane and permuting the group axis (:meth:`Group.transform_features`).
An output without a plane, such as logits ``(B, K)``, should be invariant:
``f(g x) == f(x)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .groups import Group, get_group

__all__ = ["equivariance_error", "act"]


def act(group: Group, x: Tensor, g: int) -> Tensor:
    """Element ``g`` of ``group`` acting on an image (4-D) or a G-feature map (5-D)."""
    if x.dim() == 5:
        return group.transform_features(x, g)
    if x.dim() == 4:
        return group.transform_image(x, g)
    raise ValueError(f"x.shape={tuple(x.shape)} is not valid; expected an image (B, C, H, W) "
                     "or a G-feature map (B, C, G, H, W)")


@torch.no_grad()
def equivariance_error(module: Callable[[Tensor], Tensor], x: Tensor, group: str | Group, *,
                       invariant: bool | None = None, reduction: str = "max") -> float:
    """Relative deviation from equivariance over EVERY element of ``group``.

    Per sample ``b``: ``max_g |f(g x)_b - (g f(x))_b|_inf / |f(x)_b|_inf``, where
    ``g f(x)`` is ``f(x)`` itself when ``invariant`` (default: when the output has
    no plane, i.e. fewer than 4 dimensions). ``reduction``: ``"max"`` (the worst
    sample, for exact tests) or ``"mean"`` (the average sample, for a measured
    model). The module runs as given: set eval mode and the dtype first (float64
    gives round-off ~1e-16; 0 up to round-off means exactly equivariant).
    """
    group = get_group(group)
    if reduction not in ("max", "mean"):
        raise ValueError(f"reduction={reduction!r} is not valid; expected one of ['max', 'mean']")
    y = module(x)
    if invariant is None:
        invariant = y.dim() < 4
    per_sample = lambda t: t.abs().flatten(1).amax(dim=1)  # noqa: E731
    scale = per_sample(y).clamp_min(torch.finfo(y.dtype).tiny)
    worst = torch.zeros_like(scale)
    for g in range(group.order):
        expected = y if invariant else act(group, y, g)
        worst = torch.maximum(worst, per_sample(module(act(group, x, g)) - expected) / scale)
    return (worst.max() if reduction == "max" else worst.mean()).item()
