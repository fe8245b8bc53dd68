"""All-CNN-C (Springenberg et al. 2015) with batch norm, as a Z2, p4 or p4m network.

Shapes: input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; inside,
G-feature maps ``(B, C, G, H, W)`` with ``G`` = group order (1 for z2).

Nine conv layers, each followed by group batch norm and ReLU (the last one too,
as in the reference code), padding 1 for the 3x3 layers::

    dropout 0.2 (input)
    3x3 C1, 3x3 C1, 3x3 C1 stride 2, dropout 0.5
    3x3 C2, 3x3 C2, 3x3 C2 stride 2, dropout 0.5
    3x3 C2, 1x1 C2, 1x1 num_classes
    mean over space and group -> logits

The first layer is a lifting convolution, the rest are group convolutions;
z2 runs the same code with the trivial group. Every conv has a bias (one per
G-channel), which together with the BN scale and shift reproduces the paper's
parameter counts exactly. Init: He normal with the true fan-in
``C_in * G_in * k * k`` and zero bias (the :mod:`gcnn` default; the reference
code used N(0, 0.05^2) for z2 and N(0, 0.035^2) for p4/p4m); BN scale 1, shift 0.
"""
from __future__ import annotations

from torch import Tensor, nn

import gcnn
from gcnn.validation import invalid

from .layers import ConvBNReLU, reset_submodules

__all__ = ["AllCNNC", "WIDTHS", "REFERENCE_PARAMS"]

# (C1, C2) per group: the z2 widths divided by about sqrt(group order).
WIDTHS: dict[str, tuple[int, ...]] = {"z2": (96, 192), "p4": (48, 96), "p4m": (32, 64)}

# Exact parameter counts of the reference models (weights, biases and BN scale/shift).
REFERENCE_PARAMS: dict[str, int] = {"z2": 1_372_254, "p4": 1_371_006, "p4m": 1_219_678}


class AllCNNC(nn.Module):
    """All-CNN-C with BN for one group; ``widths = (C1, C2)``."""

    arch = "allcnnc"

    def __init__(self, group: str | gcnn.Group, widths: tuple[int, ...], num_classes: int = 10,
                 in_channels: int = 3, input_dropout: float = 0.2, dropout: float = 0.5) -> None:
        super().__init__()
        if len(widths) != 2:
            raise invalid("widths", tuple(widths), "(C1, C2)")
        self.group = gcnn.get_group(group)
        c1, c2 = widths
        g = self.group
        self.layers = nn.Sequential(
            nn.Dropout(input_dropout),
            ConvBNReLU(in_channels, c1, 3, g, lifting=True, padding=1),
            ConvBNReLU(c1, c1, 3, g, padding=1),
            ConvBNReLU(c1, c1, 3, g, stride=2, padding=1),
            nn.Dropout(dropout),
            ConvBNReLU(c1, c2, 3, g, padding=1),
            ConvBNReLU(c2, c2, 3, g, padding=1),
            ConvBNReLU(c2, c2, 3, g, stride=2, padding=1),
            nn.Dropout(dropout),
            ConvBNReLU(c2, c2, 3, g, padding=1),
            ConvBNReLU(c2, c2, 1, g),
            ConvBNReLU(c2, num_classes, 1, g),
            gcnn.GlobalAvgPool(),
        )

    def reset_parameters(self) -> None:
        """Initialise every layer as ``__init__`` does (see :func:`models.layers.reset_submodules`)."""
        reset_submodules(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, num_classes)``."""
        return self.layers(x)
