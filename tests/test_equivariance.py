"""gcnn.equivariance_error: exact zero for G-CNN layers, large for plain convs,
invariance auto-detected for logits, both reductions, and clear shape errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gcnn

TOL = 1e-10  # float64 round-off


def image(rng, size=9, batch=2, channels=3):
    return torch.randn(batch, channels, size, size, generator=rng, dtype=torch.float64)


def top_left(x: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, 1)``: the top-left pixel, far from invariant."""
    return x[:, 0, 0, :1]


@pytest.mark.parametrize("kernel_size,padding", [(3, 1), (2, 0), (2, 1), (4, 0), (4, 2)])
@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_group_conv_stack_is_exactly_equivariant(group, rng, reduction, kernel_size, padding):
    """Odd and even kernels; stride 1 keeps the grid symmetric with or without padding."""
    torch.manual_seed(0)
    stack = nn.Sequential(gcnn.LiftingConv2d(3, 4, kernel_size, group, padding=padding), nn.ReLU(),
                          gcnn.GroupConv2d(4, 5, kernel_size, group, padding=padding)).double()
    assert gcnn.equivariance_error(stack, image(rng), group, reduction=reduction) < TOL


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
def test_plain_conv_is_not_equivariant(rng, kernel_size):
    """Negative control: the same measurement of an ordinary convolution is large."""
    torch.manual_seed(0)
    plain = nn.Conv2d(3, 4, kernel_size).double()
    assert gcnn.equivariance_error(plain, image(rng), "p4") > 0.1


def test_every_element_is_checked_flips_included(rng):
    """A p4-invariant net passes under p4 and fails under p4m (its mirror elements)."""
    torch.manual_seed(0)
    net = nn.Sequential(gcnn.LiftingConv2d(3, 4, 3, "p4", padding=1), gcnn.GroupPool("p4"),
                        gcnn.GlobalAvgPool()).double()
    x = image(rng)
    assert gcnn.equivariance_error(net, x, "p4") < TOL
    assert gcnn.equivariance_error(net, x, "p4m") > 1e-3


def test_invariant_is_auto_detected_from_the_output_rank(rng):
    x = image(rng)
    logits = lambda t: t.mean(dim=(2, 3))  # noqa: E731  (B, C): invariant, no plane to move
    assert gcnn.equivariance_error(logits, x, "p4m") < TOL
    with pytest.raises(ValueError, match=r"x.shape=\(2, 3\) is not valid"):
        gcnn.equivariance_error(logits, x, "p4m", invariant=False)
    # an image output is compared with the transformed output: the identity is equivariant, not invariant
    assert gcnn.equivariance_error(nn.Identity(), x, "p4m") == 0.0
    assert gcnn.equivariance_error(nn.Identity(), x, "p4m", invariant=True) > 0.1


def test_reductions_take_the_worst_or_the_mean_sample():
    """top_left of [[1, 2], [3, 4]] moves to 2, 4, 3 under p4: worst |4 - 1| / 1 = 3;
    of [[2, 1], [4, 3]] to 1, 3, 4: worst |4 - 2| / 2 = 1."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pair = torch.cat([x, x.flip(-1)])
    assert gcnn.equivariance_error(top_left, pair, "p4") == 3.0
    assert gcnn.equivariance_error(top_left, pair, "p4", reduction="max") == 3.0
    assert gcnn.equivariance_error(top_left, pair, "p4", reduction="mean") == 2.0


def test_bad_input_shape_and_reduction_raise_one_line():
    with pytest.raises(ValueError, match=r"^x.shape=\(2, 5, 5\) is not valid; expected an image"):
        gcnn.equivariance_error(nn.Identity(), torch.zeros(2, 5, 5), "p4")
    with pytest.raises(ValueError, match=r"^reduction='sum' is not valid; expected one of \['max', 'mean'\]$"):
        gcnn.equivariance_error(nn.Identity(), torch.zeros(1, 1, 3, 3), "p4", reduction="sum")
    with pytest.raises(ValueError, match="unknown group 'c4'"):
        gcnn.equivariance_error(nn.Identity(), torch.zeros(1, 1, 3, 3), "c4")
