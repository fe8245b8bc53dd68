"""The paper's rotated-MNIST networks (section 8.1, Table 1) as Z2, p4 and p4m networks.

Shapes: input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; inside,
G-feature maps ``(B, C, G, H, W)`` with ``G`` = group order (1 for z2).

Seven conv layers, the first six followed by group batch norm and ReLU, a 2x2
max-pool after layer 2, and optional dropout after layers 1, 3, 4, 5 and 6::

    3x3 C, [dropout], 3x3 C, max-pool 2x2,
    3x3 C, [dropout], 3x3 C, [dropout], 3x3 C, [dropout], 3x3 C, [dropout],
    k_last x k_last num_classes, max over the group, max (or mean) over space -> logits

The first layer is a lifting convolution, the rest group convolutions. With
rotation pooling (P4CNN-RP) every layer is instead a lifting convolution followed
(after BN and ReLU) by the max over the group, so every layer takes and gives a
plain map. Every conv has a bias (one per G-channel); with the BN scale and shift
the counts equal the reference code's. Init: the :mod:`gcnn` default (He normal
with the true fan-in ``C_in * G_in * k * k``, zero bias); BN scale 1, shift 0.

The size-dependent choices are a :class:`Layout`; the registry builds three archs:

* ``rotmnist_cnn`` (:data:`TABLE1`, 28x28): Table 1's networks. z2 = Z2CNN
  (20 channels, dropout 0.3), p4 = P4CNN (10 channels, no dropout), p4m = the p4m
  version (7 channels = 20 / sqrt(8) rounded, no dropout; beyond the paper).
  No padding, a 4x4 last layer on the 4x4 map (28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 6
  -> 4 -> 1), max over space.
* ``rotmnist_cnn_rp`` (:data:`TABLE1_RP`, 28x28): p4 = P4CNN-RP, 20 channels and the
  same parameter count (21,750) for every group, since a lifting conv has ``G_in = 1``;
  p4m pools over the 8 rotations and flips, and z2 (pooling over the trivial group)
  is Z2CNN's layers without dropout.
* ``rotmnist`` (:data:`DEMO`, 16x16): the CPU demo's network. Padding 1 in every
  layer (16x16 digits keep 8x8 maps after the pool), a 3x3 last layer, the mean
  over space, no dropout.

Exactness: every stride-1 conv keeps the grid symmetric about the centre, for the
odd 3x3 and the even 4x4 kernels alike; the non-overlapping 2x2 pool is symmetric
on even sizes only. So the p4/p4m networks are exactly invariant on inputs whose
map before the pool is even: 28x28 (and 16x16 for the demo), not 29x29 or 33x33.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

import gcnn
from gcnn.validation import check_choice, check_number, invalid

from .layers import ConvBNReLU, reset_submodules

__all__ = ["RotMNISTNet", "Layout", "TABLE1", "TABLE1_RP", "DEMO", "WIDTHS", "RP_WIDTHS", "DROPOUT",
           "REFERENCE_PARAMS", "RP_REFERENCE_PARAMS", "PAPER_NAMES", "RP_PAPER_NAMES"]


@dataclass(frozen=True)
class Layout:
    """Where the family's networks differ: ``padding`` of every conv, side of the last kernel,
    the pool over space of the logits (``"max"`` or ``"mean"``), and rotation pooling in every layer."""

    padding: int
    last_kernel: int
    space_pool: str
    rotation_pooling: bool = False


TABLE1 = Layout(padding=0, last_kernel=4, space_pool="max")                           # reference code
TABLE1_RP = Layout(padding=0, last_kernel=4, space_pool="max", rotation_pooling=True)  # reference code
DEMO = Layout(padding=1, last_kernel=3, space_pool="mean")                            # chosen, 16x16 digits

# Channels of the six hidden layers: 20 for z2, divided by sqrt(group order) and rounded
# (paper: Z2CNN 20, P4CNN 10; p4m: chosen by the same rule).
WIDTHS: dict[str, tuple[int, ...]] = {"z2": (20,), "p4": (10,), "p4m": (7,)}
# Rotation pooling: every layer a lifting conv with 20 channels (reference code, P4CNN_RP.py).
RP_WIDTHS: dict[str, tuple[int, ...]] = {group: (20,) for group in gcnn.GROUP_NAMES}

# Dropout after layers 1, 3, 4, 5, 6 of rotmnist_cnn (reference code: 0.3 in Z2CNN, commented
# out in P4CNN; p4m: chosen as p4). rotmnist_cnn_rp and rotmnist have none (P4CNN_RP.py: commented out).
DROPOUT: dict[str, float] = {"z2": 0.3, "p4": 0.0, "p4m": 0.0}

# Exact parameter counts of the reference models (weights, biases, BN scale and shift; paper, Table 1).
REFERENCE_PARAMS: dict[str, int] = {"z2": 21_750, "p4": 24_680}
RP_REFERENCE_PARAMS: dict[str, int] = {"p4": 21_750}

# The names of Table 1 (p4m: ours, beyond the paper).
PAPER_NAMES: dict[str, str] = {"z2": "Z2CNN", "p4": "P4CNN", "p4m": "P4MCNN"}
RP_PAPER_NAMES: dict[str, str] = {"p4": "P4CNN-RP"}

_SPACE_POOLS = {"max": gcnn.GlobalMaxPool, "mean": gcnn.GlobalAvgPool}


class RotMNISTNet(nn.Module):
    """Seven-layer rotated-MNIST CNN for one group, ``widths = (C,)``, laid out by ``layout``,
    with ``dropout`` after layers 1, 3, 4, 5 and 6 (no dropout module at all when 0)."""

    arch = "rotmnist"

    def __init__(self, group: str | gcnn.Group, widths: tuple[int, ...], num_classes: int = 10,
                 in_channels: int = 1, *, layout: Layout = TABLE1, dropout: float = 0.0) -> None:
        super().__init__()
        if len(widths) != 1:
            raise invalid("widths", tuple(widths), "(C,)")
        check_number("dropout", dropout, 0.0, below=1.0)
        check_choice("space_pool", layout.space_pool, list(_SPACE_POOLS))
        self.group = gcnn.get_group(group)
        self.layout = layout
        c, g, padding = widths[0], self.group, layout.padding

        def hidden(c_in: int, lifting: bool = False) -> nn.Module:
            block = ConvBNReLU(c_in, c, 3, g, lifting=lifting or layout.rotation_pooling, padding=padding)
            return nn.Sequential(*block, gcnn.GroupPool(g)) if layout.rotation_pooling else block

        def dropped() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        last_conv = gcnn.LiftingConv2d if layout.rotation_pooling else gcnn.GroupConv2d
        self.layers = nn.Sequential(
            hidden(in_channels, lifting=True), *dropped(), hidden(c),
            gcnn.SpatialPool2d(2, stride=2, mode="max"),
            *(module for _ in range(4) for module in (hidden(c), *dropped())),
            last_conv(c, num_classes, layout.last_kernel, g, padding=padding),
            gcnn.GroupPool(g, mode="max"),
            _SPACE_POOLS[layout.space_pool](),
        )

    def reset_parameters(self) -> None:
        """Initialise every layer as ``__init__`` does (see :func:`models.layers.reset_submodules`)."""
        reset_submodules(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, num_classes)``."""
        return self.layers(x)
