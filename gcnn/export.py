"""Export a trained G-CNN to plain PyTorch convolutions for deployment.

Each :class:`~gcnn.LiftingConv2d` / :class:`~gcnn.GroupConv2d` is replaced by a
:class:`PlainGroupConv2d`: an ordinary ``nn.Conv2d`` holding the expanded filter
bank, plus the reshapes between 5-D G-feature maps and 4-D ``conv2d`` input.
The result computes exactly the same function, has no group machinery left in
its convolutions, and traces with ``torch.jit.trace``.
It is a frozen snapshot: train the original model, not the export.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .conv import _GConv2d

__all__ = ["PlainGroupConv2d", "to_plain_conv"]


class PlainGroupConv2d(nn.Module):
    """A G-conv as a plain ``nn.Conv2d`` on the expanded bank.

    Input ``(B, C_in, H, W)`` (lifting) or ``(B, C_in, G, H, W)``; output
    ``(B, C_out, G, H', W')``.
    """

    def __init__(self, layer: _GConv2d) -> None:
        super().__init__()
        weight, bias = layer.expanded_weight()
        self.out_channels, self.order, self.lifting = layer.out_channels, layer.group.order, layer.lifting
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                              padding=layer.padding, bias=bias is not None,
                              device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lifting:
            x = x.flatten(1, 2)
        y = self.conv(x)
        return y.view(y.shape[0], self.out_channels, self.order, y.shape[-2], y.shape[-1])


def to_plain_conv(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every G-conv replaced by a
    :class:`PlainGroupConv2d`; ``model`` itself is left untouched."""
    plain = copy.deepcopy(model).eval()
    if isinstance(plain, _GConv2d):
        return PlainGroupConv2d(plain)
    for parent in list(plain.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, _GConv2d):
                setattr(parent, attr, PlainGroupConv2d(child))
    return plain
