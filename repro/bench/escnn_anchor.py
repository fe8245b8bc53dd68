"""The same layers built with escnn (``R2Conv`` between regular fields of C4 / D4),
the external anchor of the layer benchmark. escnn is optional: without it
:func:`escnn_version` is ``None`` and the benchmark skips this column.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable

import torch
from torch import nn

# p4 = rotations by 90 degrees (C4), p4m = rotations and mirrors (D4).
_GSPACES = {"p4": ("rot2dOnR2", {"N": 4}), "p4m": ("flipRot2dOnR2", {"N": 4})}


def escnn_version() -> str | None:
    """escnn's version string when it imports, else ``None``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module("escnn")
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return str(getattr(module, "__version__", "unknown"))


class EscnnConv(nn.Module):
    """``R2Conv`` on plain tensors: ``(B, C_in * G_in, H, W) -> (B, C_out * G, H', W')``."""

    def __init__(self, conv: nn.Module, in_type: object, wrap: Callable) -> None:
        super().__init__()
        self.conv, self.in_type, self._wrap = conv, in_type, wrap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self._wrap(x, self.in_type)).tensor


def build_escnn_conv(group: str, lifting: bool, in_channels: int, out_channels: int,
                     kernel_size: int = 3, padding: int = 1, bias: bool = True) -> EscnnConv:
    """An escnn layer with the same expanded conv shape as the gcnn layer.

    Lifting: ``in_channels`` trivial fields -> ``out_channels`` regular fields;
    group: regular -> regular. Raises ``ValueError`` for an unknown group and
    ``ImportError`` when escnn is not installed.
    """
    if group not in _GSPACES:
        raise ValueError(f"escnn anchor has no group {group!r}; expected one of {list(_GSPACES)}")
    from escnn import gspaces
    from escnn import nn as enn

    factory, kwargs = _GSPACES[group]
    space = getattr(gspaces, factory)(**kwargs)
    in_repr = space.trivial_repr if lifting else space.regular_repr
    in_type = enn.FieldType(space, in_channels * [in_repr])
    out_type = enn.FieldType(space, out_channels * [space.regular_repr])
    conv = enn.R2Conv(in_type, out_type, kernel_size, padding=padding, bias=bias)
    return EscnnConv(conv, in_type, enn.GeometricTensor)
