"""Building blocks shared by the model families."""
from __future__ import annotations

from torch import nn

import gcnn

__all__ = ["ConvBNReLU", "reset_submodules"]


class ConvBNReLU(nn.Sequential):
    """G-conv -> group batch norm -> ReLU.

    ``lifting=True``: ``(B, C_in, H, W) -> (B, C_out, G, H', W')``; otherwise
    ``(B, C_in, G, H, W) -> (B, C_out, G, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: str | gcnn.Group,
                 *, lifting: bool = False, stride: int = 1, padding: int = 0) -> None:
        conv_class = gcnn.LiftingConv2d if lifting else gcnn.GroupConv2d
        super().__init__(
            conv_class(in_channels, out_channels, kernel_size, group, stride=stride, padding=padding),
            gcnn.GroupBatchNorm2d(out_channels, group),
            nn.ReLU(inplace=True),
        )


def reset_submodules(model: nn.Module) -> None:
    """Call ``reset_parameters()`` of every submodule of ``model`` that has one (G-convs, batch norm,
    linear layers), in construction order, so that with the same seed the draws repeat those of
    ``__init__``. Each model's ``reset_parameters`` starts with this; after ``to_empty(device=...)``
    it materialises a model built under ``torch.device("meta")``."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
