"""Pooling over the group axis and over the plane of G-feature maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .groups import Group, get_group
from .validation import check_choice, check_int

__all__ = ["GroupPool", "SpatialPool2d", "GlobalAvgPool", "GlobalMaxPool"]

_MODES = ("max", "mean")


class GroupPool(nn.Module):
    """Reduce the group axis: ``(B, C, G, H, W) -> (B, C, H, W)``.

    The result is invariant to the group's action on the axis (and transforms
    like a plain image under rotations/flips of the plane).
    """

    def __init__(self, group: str | Group, mode: str = "max") -> None:
        super().__init__()
        self.group = get_group(group)
        self.mode = check_choice("mode", mode, _MODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.group.order:
            raise ValueError(
                f"GroupPool expects a G-feature map (B, C, {self.group.order}, H, W) for group "
                f"{self.group.name!r}, got shape {tuple(x.shape)}")
        return x.amax(dim=2) if self.mode == "max" else x.mean(dim=2)

    def extra_repr(self) -> str:
        return f"group={self.group.name!r}, mode={self.mode!r}"


class SpatialPool2d(nn.Module):
    """Max or average pooling over the plane of a G-feature map, each group
    element pooled separately: ``(B, C, G, H, W) -> (B, C, G, H', W')``.
    Also accepts plain ``(B, C, H, W)`` images.

    Exactly equivariant only when the pooling grid is symmetric about the
    centre (e.g. kernel 3, stride 2, padding 1 on odd sizes).
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 mode: str = "max") -> None:
        super().__init__()
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else check_int("stride", stride, 1)
        self.padding = check_int("padding", padding, 0)
        self.mode = check_choice("mode", mode, _MODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(f"SpatialPool2d expects (B, C, H, W) or (B, C, G, H, W), got shape {tuple(x.shape)}")
        shape = x.shape
        flat = x.flatten(1, 2) if x.dim() == 5 else x
        pool = F.max_pool2d if self.mode == "max" else F.avg_pool2d
        y = pool(flat, self.kernel_size, self.stride, self.padding)
        return y.view(*shape[:-2], *y.shape[-2:])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, mode={self.mode!r}"


class _GlobalPool(nn.Module):
    """Reduce the plane and (for 5-D input) the group axis: ``(B, C, G, H, W)`` or ``(B, C, H, W) -> (B, C)``."""

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W) or (B, C, G, H, W), "
                             f"got shape {tuple(x.shape)}")
        return self._reduce(x.flatten(2))


class GlobalAvgPool(_GlobalPool):
    """Average over the plane and (for 5-D input) the group axis:
    ``(B, C, G, H, W)`` or ``(B, C, H, W) -> (B, C)``. Invariant to the group."""

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2)


class GlobalMaxPool(_GlobalPool):
    """Maximum over the plane and (for 5-D input) the group axis:
    ``(B, C, G, H, W)`` or ``(B, C, H, W) -> (B, C)``. Invariant to the group."""

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=2)
