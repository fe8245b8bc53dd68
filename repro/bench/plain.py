"""The plain-CNN baseline: a z2 network in ordinary 4-D torch layers, widened to the MACs of a G-CNN.

A z2 G-CNN still runs the group machinery (``(B, C, 1, H, W)`` maps, ``BatchNorm3d``, filter
expansion); :func:`plain_twin` rewrites it with the same weights into ``nn.Conv2d`` /
``nn.BatchNorm2d`` / pooling on ``(B, C, H, W)``: the speed limit for a G-CNN of the same MACs.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
from torch import nn

import gcnn
import models
from gcnn.export import PlainGroupConv2d
from gcnn.validation import invalid


def _batch_norm(layer: gcnn.GroupBatchNorm2d) -> nn.BatchNorm2d:
    like = next((t for t in layer.state_dict().values() if t.is_floating_point()), torch.empty(0))
    norm = nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats,
                          device=like.device, dtype=like.dtype)
    norm.load_state_dict(layer.state_dict())
    return norm


def _replacement(module: nn.Module) -> nn.Module | None:
    """The 4-D torch layer computing ``module`` on squeezed z2 maps, or None to keep it."""
    group = getattr(module, "group", None)
    if isinstance(group, gcnn.Group) and group.order != 1:
        raise invalid("plain_twin model", type(module).__name__ + f"(group={group.name!r})",
                      "a z2 network (trivial group)")
    if isinstance(module, (gcnn.LiftingConv2d, gcnn.GroupConv2d)):
        return PlainGroupConv2d(module).conv         # nn.Conv2d on the expanded bank, (C_out, C_in) for z2
    if isinstance(module, gcnn.GroupBatchNorm2d):
        return _batch_norm(module)
    if isinstance(module, gcnn.SpatialPool2d):
        pool = nn.MaxPool2d if module.mode == "max" else nn.AvgPool2d
        return pool(module.kernel_size, module.stride, module.padding)
    if isinstance(module, gcnn.GroupPool):
        return nn.Identity()                         # max or mean over one group element
    if isinstance(module, gcnn.GlobalAvgPool):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return None


def plain_twin(model: nn.Module) -> nn.Module:
    """A copy of the z2 network ``model`` in plain torch layers on ``(B, C, H, W)``, with the same
    weights, BN statistics and train/eval mode (the same function). ValueError for a non-trivial group."""
    twin = copy.deepcopy(model)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if (new := _replacement(child)) is not None:
                setattr(parent, name, new.train(child.training))
    return twin


def build_plain_same_macs(arch: str, group: str, num_classes: int = 10, width: float = 1.0,
                          overrides: Mapping[str, Any] | None = None) -> tuple[nn.Module, float]:
    """The plain twin of the z2 ``arch`` with the MACs per image of ``group``'s network at ``width``, and
    its width. MACs grow about as width squared and channel counts are rounded: of at most 6
    square-root updates of the width the closest wins, the first within 0.5% at once."""
    shape = models.default_input_shape(arch)

    def build(g: str, w: float, classes: int = 10) -> nn.Module:
        return models.build_model(arch, g, classes, in_channels=shape[0], width=w, **dict(overrides or {}))

    target = models.count_macs(build(group, width), shape)
    best, candidate = (math.inf, width), width
    for _ in range(6):
        macs = models.count_macs(build("z2", candidate), shape)
        best = min(best, (abs(macs / target - 1), candidate))
        if best[0] <= 0.005:
            break
        candidate *= math.sqrt(target / macs)
    return plain_twin(build("z2", best[1], num_classes)), best[1]
