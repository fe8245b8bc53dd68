"""Pre-activation ResNets (He et al. 2016) for CIFAR as Z2, p4 or p4m networks.

Shapes: input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; inside,
G-feature maps ``(B, C, G, H, W)`` with ``G`` = group order (1 for z2).

Depth ``6 n + 2``: a 3x3 lifting conv, three stages of ``n`` blocks
(BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut), then BN-ReLU, a global mean
and a linear classifier. The first block of stages 2 and 3 has stride 2 and a
1x1 stride-2 projection shortcut on its (un-activated) input, as in the
reference code; every other shortcut is the identity.

Two heads (``head=``):

* ``"invariant"`` (default): the mean over space AND group, then
  ``Linear(C3, num_classes)``; the logits are exactly invariant on symmetric
  sampling grids.
* ``"reference"``: the reference code's head, the mean over space only, then
  ``Linear(C3 * G, num_classes)`` on every group channel (ordered ``c * G + g``);
  it has ``C3 * (G - 1) * num_classes`` more parameters (3,150 for ResNet44 p4m,
  7,000 for ResNet26 p4m at 10 classes) and its logits are NOT invariant: the
  classifier sees which way the image was turned. Identical to ``"invariant"`` for z2.

Every conv has a bias (one per G-channel); with the BN scale/shift and the
classifier's bias, and the reference head, the counts match the paper exactly.

Init: convs He normal with the true fan-in ``C_in * G_in * k * k``, zero bias
(the :mod:`gcnn` default); classifier N(0, 1/fan_in), zero bias; BN scale 1, shift 0.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

import gcnn
from gcnn.validation import check_choice, check_int, invalid

from .layers import reset_submodules

__all__ = ["PreActBlock", "PreActResNet", "WIDTHS", "BLOCKS", "REFERENCE_PARAMS", "HEADS"]

# The classifier heads: "invariant" pools over space and group, "reference" over space only.
HEADS = ("invariant", "reference")

# Blocks per stage, by architecture name (depth = 6 n + 2).
BLOCKS: dict[str, int] = {"resnet44": 7, "resnet26": 4}

# Widths per stage: the z2 widths divided by sqrt(group order), rounded.
WIDTHS: dict[str, dict[str, tuple[int, ...]]] = {
    "resnet44": {"z2": (32, 64, 128), "p4": (16, 32, 64), "p4m": (11, 23, 45)},
    "resnet26": {"z2": (71, 142, 284), "p4": (36, 71, 142), "p4m": (25, 50, 100)},
}

# Exact parameter counts of the reference models (built here with head="reference").
REFERENCE_PARAMS: dict[str, dict[str, int]] = {
    "resnet44": {"z2": 2_639_434, "p4m": 2_622_878},
    "resnet26": {"z2": 7_236_046, "p4m": 7_173_110},
}


class PreActBlock(nn.Module):
    """``(B, C_in, G, H, W) -> (B, C_out, G, H / stride, W / stride)``."""

    def __init__(self, in_channels: int, out_channels: int, group: gcnn.Group, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = gcnn.GroupBatchNorm2d(in_channels, group)
        self.conv1 = gcnn.GroupConv2d(in_channels, out_channels, 3, group, stride=stride, padding=1)
        self.bn2 = gcnn.GroupBatchNorm2d(out_channels, group)
        self.conv2 = gcnn.GroupConv2d(out_channels, out_channels, 3, group, padding=1)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (gcnn.GroupConv2d(in_channels, out_channels, 1, group, stride=stride)
                         if needs_projection else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.relu(self.bn1(x)))
        h = self.conv2(self.relu(self.bn2(h)))
        return self.shortcut(x) + h


class SpatialMean(nn.Module):
    """Mean over the plane, keeping every group channel: ``(B, C, G, H, W) -> (B, C * G)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1)).flatten(1)


class PreActResNet(nn.Module):
    """Pre-activation ResNet with ``blocks`` blocks per stage, ``widths = (C1, C2, C3)``
    and the classifier ``head`` (one of :data:`HEADS`, see the module docstring)."""

    def __init__(self, group: str | gcnn.Group, widths: tuple[int, ...], blocks: int,
                 num_classes: int = 10, in_channels: int = 3, head: str = "invariant") -> None:
        super().__init__()
        if len(widths) != 3:
            raise invalid("widths", tuple(widths), "(C1, C2, C3)")
        check_int("blocks", blocks, 1)
        check_choice("head", head, HEADS)
        self.group = gcnn.get_group(group)
        self.arch = f"resnet{6 * blocks + 2}"
        self.stem = gcnn.LiftingConv2d(in_channels, widths[0], 3, self.group, padding=1)
        stages, c_in = [], widths[0]
        for stage, c_out in enumerate(widths):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                stages.append(PreActBlock(c_in, c_out, self.group, stride))
                c_in = c_out
        self.blocks = nn.Sequential(*stages)
        pool, features = ((gcnn.GlobalAvgPool(), c_in) if head == "invariant"
                          else (SpatialMean(), c_in * self.group.order))
        self.head = nn.Sequential(gcnn.GroupBatchNorm2d(c_in, self.group), nn.ReLU(), pool)
        self.classifier = nn.Linear(features, num_classes)
        self._init_classifier()

    def _init_classifier(self) -> None:
        nn.init.normal_(self.classifier.weight, 0.0, 1.0 / math.sqrt(self.classifier.in_features))
        nn.init.zeros_(self.classifier.bias)

    def reset_parameters(self) -> None:
        """Initialise every layer as ``__init__`` does (see :func:`models.layers.reset_submodules`)."""
        reset_submodules(self)  # the classifier's default init too: the same draws as its construction
        self._init_classifier()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, num_classes)``."""
        return self.classifier(self.head(self.blocks(self.stem(x))))
