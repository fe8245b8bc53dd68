"""The paper's small rotated-MNIST network (Z2CNN / P4CNN), sized for 16x16 digits.

Shapes: input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; inside,
G-feature maps ``(B, C, G, H, W)`` with ``G`` = group order (1 for z2).
"""
from __future__ import annotations

from torch import Tensor, nn

import gcnn
from gcnn.validation import invalid

from .layers import ConvBNReLU

__all__ = ["RotMNISTNet", "WIDTHS"]

# Channels of the six hidden layers: 20 for z2, divided by sqrt(group order) and rounded.
WIDTHS: dict[str, tuple[int, ...]] = {"z2": (20,), "p4": (10,), "p4m": (7,)}


class RotMNISTNet(nn.Module):
    """Follows the paper's P4CNN (Z2CNN for z2): seven 3x3 conv layers, the first
    six with batch norm and ReLU, a 2x2 max-pool after layer 2, the last layer
    maps to the classes, then max over the group and the mean over space.

    Differs from the reference: padding 1 in every layer (so 16x16 digits keep
    8x8 maps after the pool; the reference uses no padding on 28x28 digits), a
    3x3 instead of 4x4 last layer (even kernels have no centre to rotate about),
    the mean instead of the max over space, and no dropout. Non-overlapping 2x2
    pooling is symmetric on even sizes, so the network is exactly invariant on
    even input sizes (16x16, 32x32), not on odd ones. Init: the :mod:`gcnn` default
    (He normal with the true fan-in ``C_in * G_in * k * k``, zero bias).
    """

    arch = "rotmnist"

    def __init__(self, group: str | gcnn.Group, widths: tuple[int, ...], num_classes: int = 10,
                 in_channels: int = 1) -> None:
        super().__init__()
        if len(widths) != 1:
            raise invalid("widths", tuple(widths), "(C,)")
        self.group = gcnn.get_group(group)
        c, g = widths[0], self.group
        self.layers = nn.Sequential(
            ConvBNReLU(in_channels, c, 3, g, lifting=True, padding=1),
            ConvBNReLU(c, c, 3, g, padding=1),
            gcnn.SpatialPool2d(2, stride=2, mode="max"),
            *(ConvBNReLU(c, c, 3, g, padding=1) for _ in range(4)),
            gcnn.GroupConv2d(c, num_classes, 3, g, padding=1),
            gcnn.GroupPool(g, mode="max"),
            gcnn.GlobalAvgPool(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, num_classes)``."""
        return self.layers(x)
