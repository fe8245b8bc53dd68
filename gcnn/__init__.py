"""gcnn: group equivariant convolutions (Cohen & Welling, ICML 2016) in plain PyTorch.

G-feature maps are 5-D tensors ``(batch, channels, group_order, height, width)``;
the group conventions are documented in :mod:`gcnn.groups`.
"""
from .conv import GroupConv2d, LiftingConv2d
from .equivariance import equivariance_error
from .expansion import expand_filters, expansion_index
from .export import PlainGroupConv2d, to_plain_conv
from .groups import GROUP_NAMES, Group, get_group
from .norm import GroupBatchNorm2d
from .pooling import GlobalAvgPool, GlobalMaxPool, GroupPool, SpatialPool2d

__all__ = [
    "GROUP_NAMES", "Group", "get_group",
    "expand_filters", "expansion_index",
    "LiftingConv2d", "GroupConv2d", "GroupBatchNorm2d",
    "GroupPool", "SpatialPool2d", "GlobalAvgPool", "GlobalMaxPool",
    "PlainGroupConv2d", "to_plain_conv",
    "equivariance_error",
]
__version__ = "0.1.0"
