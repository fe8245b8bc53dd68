"""Batch normalisation for G-feature maps."""
from __future__ import annotations

import torch
from torch import nn

from .groups import Group, get_group

__all__ = ["GroupBatchNorm2d"]


class GroupBatchNorm2d(nn.BatchNorm3d):
    """Batch norm over ``(B, C, G, H, W)`` with one mean, variance, gamma and beta
    per G-channel, shared over the group axis and the plane, so it commutes with
    every group transformation (``BatchNorm2d`` over ``C * G`` channels would not).

    It is a :class:`torch.nn.BatchNorm3d` whose "depth" axis is the group axis,
    so ``SyncBatchNorm.convert_sync_batchnorm`` and checkpoints treat it as such;
    ``device=`` and ``dtype=`` are passed to it.
    """

    def __init__(self, num_features: int, group: str | Group, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        self.group = get_group(group)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        expected = (self.num_features, self.group.order)
        if x.dim() != 5 or tuple(x.shape[1:3]) != expected:
            raise ValueError(
                f"GroupBatchNorm2d expects a G-feature map (B, {self.num_features}, "
                f"{self.group.order}, H, W) for group {self.group.name!r}, got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group={self.group.name!r}"
