"""Prototype G-conv variants, timed beside :mod:`gcnn`'s layers as extra candidates.

They compute exactly what the library layers compute (same weight, same
expansion index, same output) in a different way, to measure what a change to
``gcnn/expansion.py`` / ``gcnn/conv.py`` would buy before making it there.
Each factory takes a built gcnn layer and returns a module that shares its
parameters (the same ``Parameter`` objects, registered directly).

* ``lean``: the library's autograd graph (``index_select`` on ``(C_out, N)``
  rows), but the bank's bias by ``expand`` + ``reshape`` and the fewest Python
  steps per call: no ``parameters()`` iteration, the eval cache keyed on the two
  tensors' versions.
* ``proposed``: the library classes with only ``_bank`` / ``expanded_weight`` /
  ``forward`` replaced by the change proposed for ``gcnn/conv.py``.
* ``fused``: the bank and its bias from one :class:`torch.autograd.Function`
  whose backward is a gather with the inverse permutation plus a sum over the
  group axis, instead of ``zeros`` + ``index_add_`` (each output element ``g``
  permutes the ``N = C_in * G_in * k * k`` entries of ``w[o]``, so every entry
  is used exactly once per ``g``); deterministic on CUDA, no atomics.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import gcnn

__all__ = ["VARIANTS", "LeanGConv", "FusedGConv", "ExpandBank", "inverse_expansion_index", "proposed_layer"]


def inverse_expansion_index(index: torch.Tensor, order: int) -> torch.Tensor:
    """``inv`` with ``bank_row[inv].view(G, N).sum(0) == grad`` layout: for each ``g`` the
    inverse of the permutation ``index[g*N:(g+1)*N]``, offset by ``g*N``; shape ``(G*N,)``."""
    perms = index.view(order, -1)
    n = perms.shape[1]
    inverse = torch.empty_like(perms)
    inverse.scatter_(1, perms, torch.arange(n, device=index.device).expand(order, n).contiguous())
    return (inverse + torch.arange(order, device=index.device)[:, None] * n).flatten()


class ExpandBank(torch.autograd.Function):
    """``(weight (C_out, ...), bias (C_out,) | None) -> (bank (C_out, G*N), bias (C_out*G,) | None)``."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor | None, index: torch.Tensor,
                inverse: torch.Tensor, order: int):
        ctx.save_for_backward(inverse)
        ctx.weight_shape, ctx.order = weight.shape, order
        c_out = weight.shape[0]
        bank = weight.reshape(c_out, -1).index_select(1, index)
        out_bias = None if bias is None else bias[:, None].expand(c_out, order).reshape(-1)
        return bank, out_bias

    @staticmethod
    def backward(ctx, grad_bank: torch.Tensor, grad_bias: torch.Tensor | None):
        (inverse,) = ctx.saved_tensors
        c_out = ctx.weight_shape[0]
        grad_w = grad_bank.reshape(c_out, -1).index_select(1, inverse).view(c_out, ctx.order, -1).sum(1)
        grad_b = None if grad_bias is None else grad_bias.view(c_out, ctx.order).sum(1)
        return grad_w.view(ctx.weight_shape), grad_b, None, None, None


class LeanGConv(nn.Module):
    """The library layer's computation with the fewest Python steps (see module docstring)."""

    def __init__(self, layer: gcnn.LiftingConv2d | gcnn.GroupConv2d) -> None:
        super().__init__()
        self.weight, self.bias = layer.weight, layer.bias
        self.register_buffer("index", layer.expansion_index, persistent=False)
        self.order, self.out_channels = layer.group.order, layer.out_channels
        self.stride, self.padding = layer.stride, layer.padding
        self.lifting = isinstance(layer, gcnn.LiftingConv2d)
        c_out, c_in, g_in, k, _ = layer.weight.shape
        self.bank_shape = (c_out * self.order, c_in * g_in, k, k)
        self._cache: tuple | None = None

    def bank(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        c_out = w.shape[0]
        bank = w.reshape(c_out, -1).index_select(1, self.index).view(self.bank_shape)
        return bank, None if b is None else b[:, None].expand(c_out, self.order).reshape(-1)

    def _cached_bank(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        key = (w._version, w.data_ptr(), None if b is None else (b._version, b.data_ptr()))
        cache = self._cache
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = self._cache = (key, *self.bank())
        return cache[1], cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.bank() if self.training or torch.is_grad_enabled() else self._cached_bank()
        if not self.lifting:
            x = x.flatten(1, 2)
        y = F.conv2d(x, weight, bias, self.stride, self.padding)
        return y.unflatten(1, (self.out_channels, self.order))


class FusedGConv(LeanGConv):
    """:class:`LeanGConv` whose train-mode bank comes from :class:`ExpandBank`."""

    def __init__(self, layer: gcnn.LiftingConv2d | gcnn.GroupConv2d) -> None:
        super().__init__(layer)
        self.register_buffer("inverse", inverse_expansion_index(self.index, self.order), persistent=False)

    def bank(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        bank, bias = ExpandBank.apply(self.weight, self.bias, self.index, self.inverse, self.order)
        return bank.view(self.bank_shape), bias


class _ProposedMixin:
    """The change proposed for ``gcnn/conv.py``'s ``_GConv2d``, verbatim: the eval cache
    keyed on ``weight``/``bias`` directly (no ``parameters()`` walk), ``is_compiling``
    looked up once at import and ``unflatten`` for the output. ``expanded_weight``
    (the train path) stays as it is: ``expand`` + ``reshape`` for the bias measured
    slower than ``repeat_interleave`` at the tiny size."""

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        grads_needed = torch.is_grad_enabled() and (w.requires_grad or (b is not None and b.requires_grad))
        if self.training or grads_needed or _is_compiling():
            self._cache = None
            return self.expanded_weight()
        key = (w._version, w.data_ptr(), w.dtype, w.device, None if b is None else (b._version, b.data_ptr()))
        cache = self._cache
        if cache is None or cache[0] != key:
            cache = self._cache = (key, *self.expanded_weight())
        return cache[1], cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        weight, bias = self._bank()
        y = F.conv2d(x, weight, bias, self.stride, self.padding)
        return y.unflatten(1, (self.out_channels, self.group.order))


# Resolved once at import: torch.compiler.is_compiling exists from torch 2.3 on.
_is_compiling: Callable[[], bool] = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


class ProposedLiftingConv2d(_ProposedMixin, gcnn.LiftingConv2d):
    """:class:`gcnn.LiftingConv2d` with the proposed ``_bank`` / ``forward``."""


class ProposedGroupConv2d(_ProposedMixin, gcnn.GroupConv2d):
    """:class:`gcnn.GroupConv2d` with the proposed ``_bank`` / ``forward`` and a check
    of the input shape without building tuples."""

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.group.order:
            return super()._check_input(x)          # raises the library's ValueError
        return x.flatten(1, 2)


def proposed_layer(layer: gcnn.LiftingConv2d | gcnn.GroupConv2d) -> nn.Module:
    """The proposed layer class, sharing ``layer``'s parameters."""
    cls = ProposedLiftingConv2d if isinstance(layer, gcnn.LiftingConv2d) else ProposedGroupConv2d
    new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.group, stride=layer.stride,
              padding=layer.padding, bias=layer.bias is not None).to(layer.weight.device)
    new.weight, new.bias = layer.weight, layer.bias
    return new


VARIANTS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "lean": LeanGConv,
    "fused": FusedGConv,
    "proposed": proposed_layer,
}
