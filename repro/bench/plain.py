"""The plain-CNN baseline: a z2 network in ordinary 4-D torch layers, widened to the MACs
of a G-CNN.

A z2 G-CNN is a plain CNN written with G-layers of the trivial group: its feature
maps are ``(B, C, 1, H, W)``, its batch norm is a ``BatchNorm3d``, and every conv goes
through the filter expansion. :func:`plain_twin` rewrites such a network, layer by
layer and with the same weights, into ``nn.Conv2d`` / ``nn.BatchNorm2d`` / pooling on
``(B, C, H, W)`` tensors, so it computes the same function without any group
machinery: the speed limit a G-CNN of the same MACs is measured against.
:func:`same_mac_width` finds the width multiplier that gives the z2 network the
MACs per image of the G-CNN.
"""
from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Mapping

import torch
from torch import nn

import gcnn
import models
from gcnn.validation import invalid


def _conv(layer: nn.Module) -> nn.Conv2d:
    weight, bias = layer.expanded_weight()          # (C_out, C_in, k, k) for the trivial group
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                     padding=layer.padding, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def _batch_norm(layer: gcnn.GroupBatchNorm2d) -> nn.BatchNorm2d:
    reference = next(itertools.chain(layer.parameters(), layer.buffers()), torch.empty(0))
    norm = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                          track_running_stats=layer.track_running_stats, device=reference.device)
    norm.load_state_dict(layer.state_dict())
    return norm.to(reference.dtype) if reference.is_floating_point() else norm


def _replacement(module: nn.Module) -> nn.Module | None:
    """The 4-D torch layer computing ``module`` on squeezed z2 maps, or None to keep it."""
    group = getattr(module, "group", None)
    if isinstance(group, gcnn.Group) and group.order != 1:
        raise invalid("plain_twin model", type(module).__name__ + f"(group={group.name!r})",
                      "a z2 network (trivial group)")
    if isinstance(module, (gcnn.LiftingConv2d, gcnn.GroupConv2d)):
        return _conv(module)
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
    """A copy of the z2 network ``model`` built from ``nn.Conv2d``, ``nn.BatchNorm2d`` and
    torch pooling on ``(B, C, H, W)`` tensors, with the same weights and BN statistics:
    the same function of ``(B, C_in, H, W)`` images, in the same train/eval mode.
    ValueError if ``model`` has a layer of a non-trivial group."""
    twin = copy.deepcopy(model)
    if (new := _replacement(twin)) is not None:
        return new.train(model.training)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            new = _replacement(child)
            if new is not None:
                setattr(parent, name, new.train(child.training))
    return twin


def _macs(arch: str, group: str, width: float, overrides: Mapping[str, Any]) -> int:
    model = models.build_model(arch, group, width=width, in_channels=models.default_input_shape(arch)[0],
                               **dict(overrides))
    return models.count_macs(model, models.default_input_shape(arch))


def same_mac_width(arch: str, group: str, width: float = 1.0, overrides: Mapping[str, Any] | None = None,
                   steps: int = 6, tolerance: float = 0.005) -> float:
    """The width multiplier at which the z2 ``arch`` has the MACs per image of ``group``'s
    network at ``width`` (with the same model ``overrides``). MACs grow about as the
    square of the width, channel counts are rounded: of at most ``steps`` square-root
    updates the closest wins, the first within ``tolerance`` at once."""
    overrides = dict(overrides or {})
    target = _macs(arch, group, width, overrides)
    best, candidate = (math.inf, width), width
    for _ in range(steps):
        macs = _macs(arch, "z2", candidate, overrides)
        best = min(best, (abs(macs / target - 1), candidate))
        if best[0] <= tolerance:
            break
        candidate *= math.sqrt(target / macs)
    return best[1]


def build_plain_same_macs(arch: str, group: str, num_classes: int = 10, width: float = 1.0,
                          overrides: Mapping[str, Any] | None = None) -> tuple[nn.Module, float]:
    """The plain twin of the z2 ``arch`` with the MACs of ``group``'s network at ``width``,
    and the z2 width multiplier it was built with."""
    z2_width = same_mac_width(arch, group, width, overrides)
    z2 = models.build_model(arch, "z2", num_classes, in_channels=models.default_input_shape(arch)[0],
                            width=z2_width, **dict(overrides or {}))
    return plain_twin(z2), z2_width
