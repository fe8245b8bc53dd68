"""Pre-activation ResNets (He et al. 2016) for CIFAR as Z2, p4 or p4m networks.

Shapes: input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; inside,
G-feature maps ``(B, C, G, H, W)`` with ``G`` = group order (1 for z2).

Depth ``6 n + 2``: a 3x3 lifting conv, three stages of ``n`` blocks
(BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut), then BN-ReLU, the mean over
space AND group, and a linear classifier. The first block of stages 2 and 3
has stride 2 and a 1x1 stride-2 projection shortcut on its (un-activated)
input, as in the reference code; every other shortcut is the identity.

Every conv has a bias (one per G-channel); with the BN scale/shift and the
classifier's bias the z2 counts match the paper exactly. The reference p4m
head averages over space only and feeds ``C3 * G`` features to the classifier;
ours also averages over the group (exactly invariant on symmetric grids), so
it has ``C3 * (G - 1) * num_classes`` fewer parameters (3,150 for ResNet44
p4m, 7,000 for ResNet26 p4m at 10 classes).

Init: convs He normal with the true fan-in ``C_in * G_in * k * k``, zero bias
(the :mod:`gcnn` default); classifier N(0, 1/fan_in), zero bias; BN scale 1, shift 0.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

import gcnn

__all__ = ["PreActBlock", "PreActResNet", "WIDTHS", "BLOCKS", "REFERENCE_PARAMS"]

# Blocks per stage, by architecture name (depth = 6 n + 2).
BLOCKS: dict[str, int] = {"resnet44": 7, "resnet26": 4}

# Widths per stage: the z2 widths divided by sqrt(group order), rounded.
WIDTHS: dict[str, dict[str, tuple[int, ...]]] = {
    "resnet44": {"z2": (32, 64, 128), "p4": (16, 32, 64), "p4m": (11, 23, 45)},
    "resnet26": {"z2": (71, 142, 284), "p4": (36, 71, 142), "p4m": (25, 50, 100)},
}

# Exact parameter counts of the reference models (p4m with the group-mixing head).
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


class PreActResNet(nn.Module):
    """Pre-activation ResNet with ``blocks`` blocks per stage and ``widths = (C1, C2, C3)``."""

    def __init__(self, group: str | gcnn.Group, widths: tuple[int, ...], blocks: int,
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"PreActResNet needs widths (C1, C2, C3), got {tuple(widths)!r}")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"blocks must be an int >= 1, got {blocks!r}")
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
        self.head = nn.Sequential(gcnn.GroupBatchNorm2d(c_in, self.group), nn.ReLU(), gcnn.GlobalAvgPool())
        self.classifier = nn.Linear(c_in, num_classes)
        nn.init.normal_(self.classifier.weight, 0.0, 1.0 / math.sqrt(c_in))
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, num_classes)``."""
        return self.classifier(self.head(self.blocks(self.stem(x))))
