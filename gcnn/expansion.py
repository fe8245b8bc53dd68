"""Filter expansion: turn stored G-filters into one plain ``conv2d`` filter bank.

A G-convolution (Cohen & Welling 2016, eq. 10) correlates the input with the
filter transformed by every output element ``g``::

    [f * psi](g) = sum_{h, y} f(y, h) psi(g^-1 y, g^-1 h)

With the stored weight ``w`` of shape ``(C_out, C_in, G_in, k, k)`` the expanded
bank has shape ``(C_out * G, C_in * G_in, k, k)`` and entry::

    bank[(o, g), (i, h)] = transform_image(w[o, i, g^-1 h], g)

(for a lifting layer ``G_in = 1`` and only the plane moves). Both the spatial
rotation/flip and the group-axis permutation are permutations of the
``C_in * G_in * k * k`` entries of ``w[o]``, so the whole expansion is one
``index_select`` with an index precomputed once per layer.
"""
from __future__ import annotations

import torch

from .groups import Group

__all__ = ["expansion_index", "expand_filters"]


def expansion_index(group: Group, in_channels: int, in_order: int, kernel_size: int) -> torch.Tensor:
    """Index of shape ``(G * C_in * G_in * k * k,)`` into ``w[o].flatten()``.

    ``in_order`` is 1 for a lifting layer and ``group.order`` for a group layer. Built on the CPU
    (also under a ``torch.device`` context such as ``"meta"``); the layer copies it to its device.
    """
    k2 = kernel_size * kernel_size
    cpu = torch.device("cpu")
    pixels = torch.arange(k2, device=cpu).view(kernel_size, kernel_size)
    rows = []
    for g in range(group.order):
        src_pixel = group.transform_image(pixels, g).flatten()          # (k*k,)
        if in_order == 1:
            src_axis = torch.zeros(1, dtype=torch.long, device=cpu)
        else:
            src_axis = group.axis_permutation(g)                         # (G_in,)
        per_channel = src_axis[:, None] * k2 + src_pixel[None, :]       # (G_in, k*k)
        offsets = torch.arange(in_channels, device=cpu)[:, None, None] * (in_order * k2)
        rows.append((offsets + per_channel[None]).flatten())
    return torch.stack(rows).flatten()


def expand_filters(weight: torch.Tensor, index: torch.Tensor, out_order: int) -> torch.Tensor:
    """Expand ``weight (C_out, C_in, G_in, k, k)`` into ``(C_out * G, C_in * G_in, k, k)``."""
    c_out, c_in, g_in, k, _ = weight.shape
    bank = weight.reshape(c_out, -1).index_select(1, index)
    return bank.view(c_out * out_order, c_in * g_in, k, k)
