"""Shared fixtures: groups, float64 inputs and the exact equivariance check."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

import gcnn

TOL = 1e-10  # float64: exact up to round-off


@pytest.fixture(params=gcnn.GROUP_NAMES)
def group(request) -> gcnn.Group:
    return gcnn.get_group(request.param)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def act(group: gcnn.Group, x: torch.Tensor, g: int) -> torch.Tensor:
    """The group's action on an image (4-D) or a G-feature map (5-D)."""
    return group.transform_features(x, g) if x.dim() == 5 else group.transform_image(x, g)


def equivariance_error(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       group: gcnn.Group, invariant: bool = False) -> float:
    """Largest relative deviation of ``module(g x)`` from ``g module(x)`` (or from
    ``module(x)`` when ``invariant``) over EVERY element ``g`` of the group."""
    y = module(x)
    worst = 0.0
    for g in range(group.order):
        expected = y if invariant else act(group, y, g)
        got = module(act(group, x, g))
        scale = expected.abs().max().clamp_min(1e-12)
        worst = max(worst, ((got - expected).abs().max() / scale).item())
    return worst


@pytest.fixture
def check_equivariant() -> Callable[..., None]:
    def check(module, x, group, invariant: bool = False) -> None:
        assert x.dtype == torch.float64
        err = equivariance_error(module, x, group, invariant)
        assert err < TOL, f"equivariance error {err:.3e} for group {group.name}"
    return check


@pytest.fixture
def equivariance_error_of() -> Callable[..., float]:
    return equivariance_error


def _full_stack(group: gcnn.Group) -> nn.Module:
    """Every layer kind in one float64 net, 9x9 input -> invariant (B, 6) output."""
    return nn.Sequential(
        nn.Dropout(0.2),
        gcnn.LiftingConv2d(3, 4, 3, group=group, padding=1),
        gcnn.GroupBatchNorm2d(4, group=group), nn.ReLU(),
        gcnn.GroupConv2d(4, 5, 3, group=group, stride=2, padding=1),      # 9 -> 5
        gcnn.GroupBatchNorm2d(5, group=group), nn.ReLU(), nn.Dropout(0.5),
        gcnn.SpatialPool2d(3, stride=2, padding=1),                         # 5 -> 3
        gcnn.GroupConv2d(5, 6, 1, group=group),
        gcnn.GroupPool(group=group, mode="max"),
        gcnn.GlobalAvgPool(),
    ).double()


@pytest.fixture
def full_stack() -> Callable[[gcnn.Group], nn.Module]:
    return _full_stack
