"""Lifting and group convolution layers.

Shapes (``G`` = order of the layer's group, ``k`` = kernel size):

* :class:`LiftingConv2d`: ``(B, C_in, H, W) -> (B, C_out, G, H', W')``
* :class:`GroupConv2d`:   ``(B, C_in, G, H, W) -> (B, C_out, G, H', W')``

Both store ``weight`` of shape ``(C_out, C_in, G_in, k, k)`` (``G_in`` = 1 for
lifting) and ``bias`` of shape ``(C_out,)``, one bias per G-channel shared over
the group axis; ``device=`` and ``dtype=`` place them as in ``torch.nn`` layers
(``device="meta"`` too: ``to_empty(device=...)`` then ``reset_parameters()``).
The forward pass is one :func:`torch.nn.functional.conv2d` with the bank from
:func:`gcnn.expansion.expand_filters`. In eval mode the
bank is cached until the weight changes (an optimiser step, ``load_state_dict``
or an in-place edit of the parameter) or the module returns to training; the
cache is never in the ``state_dict`` nor in a pickle or deepcopy. Edits through
``param.data`` bypass PyTorch's version counter: call :meth:`clear_cache` after them
(e.g. after an EMA update written with ``.data``).

Kernels are square with any side ``k >= 1``, odd or even: a quarter turn or flip
of a ``k x k`` array about its centre is an exact permutation of its entries.
Padding is symmetric, so a layer is exactly equivariant wherever its sampling
grid is symmetric about the centre of the input: always at stride 1, and at
stride ``s`` when ``s`` divides ``H + 2 * padding - k`` (e.g. ``k = 3, padding = 1``
on odd sizes, ``k = 2, padding = 0`` on even sizes).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .expansion import expand_filters, expansion_index
from .groups import Group, get_group
from .validation import check_int, invalid

__all__ = ["LiftingConv2d", "GroupConv2d"]


# True while torch.compile traces (torch >= 2.3); the eval cache is bypassed then.
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


_KERNEL_EXPECTED = "an int k >= 1 or (k, k): rotations and flips need a square filter"


def _check_kernel_size(kernel_size: object) -> int:
    """The side of a square kernel, given as ``k`` or ``(k, k)``. Odd and even sides both work:
    a quarter turn or flip of the ``k x k`` array about its centre is exact either way."""
    side = kernel_size
    if isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 2 and kernel_size[0] == kernel_size[1]:
        side = kernel_size[0]
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise invalid("kernel_size", kernel_size, _KERNEL_EXPECTED)
    return side


class _GConv2d(nn.Module):
    """Shared machinery; use :class:`LiftingConv2d` or :class:`GroupConv2d`."""

    lifting: bool

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: str | Group,
                 stride: int = 1, padding: int = 0, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.group = get_group(group)
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.kernel_size = kernel_size = _check_kernel_size(kernel_size)
        self.stride = check_int("stride", stride, 1)
        self.padding = check_int("padding", padding, 0)
        self.in_order = 1 if self.lifting else self.group.order
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.in_order,
                                               kernel_size, kernel_size, **factory_kwargs))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory_kwargs)) if bias else None
        index_size = self.group.order * in_channels * self.in_order * kernel_size ** 2
        self.register_buffer("expansion_index", torch.empty(index_size, dtype=torch.long, device=device),
                             persistent=False)
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        """True fan-in of one output unit: ``C_in * G_in * k * k``."""
        return self.in_channels * self.in_order * self.kernel_size ** 2

    def reset_parameters(self) -> None:
        """He (Kaiming) normal init with the true fan-in; zero bias; the expansion index filled in
        (so ``to_empty(device=...)`` then ``reset_parameters()`` materialises a meta-device layer)."""
        with torch.no_grad():
            self.expansion_index.copy_(expansion_index(self.group, self.in_channels, self.in_order,
                                                       self.kernel_size))
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / self.fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def expanded_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The plain ``conv2d`` bank ``(C_out * G, C_in * G_in, k, k)`` and bias ``(C_out * G,)``."""
        weight = expand_filters(self.weight, self.expansion_index, self.group.order)
        bias = None if self.bias is None else self.bias.repeat_interleave(self.group.order)
        return weight, bias

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.training:
            return self.expanded_weight()
        params = (self.weight,) if self.bias is None else (self.weight, self.bias)
        if (torch.is_grad_enabled() and any(p.requires_grad for p in params)) or _is_compiling():
            self._cache = None  # weight gradients wanted: never serve a detached bank
            return self.expanded_weight()
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, *self.expanded_weight())
        return self._cache[1], self._cache[2]

    def clear_cache(self) -> None:
        """Drop the cached eval-mode bank (needed only after edits through ``.data``)."""
        self._cache = None

    def train(self, mode: bool = True) -> "_GConv2d":
        self.clear_cache()
        return super().train(mode)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = None  # deepcopy/pickle never carry a bank
        return state

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        weight, bias = self._bank()
        y = F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)
        return y.unflatten(1, (self.out_channels, self.group.order))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"group={self.group.name!r}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")


class LiftingConv2d(_GConv2d):
    """Lift a plain image to a G-feature map: ``(B, C_in, H, W) -> (B, C_out, G, H', W')``."""

    lifting = True

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == self.in_channels:
            return x
        raise ValueError(
            f"LiftingConv2d expects an image batch (B, {self.in_channels}, H, W), "
            f"got shape {tuple(x.shape)}")


class GroupConv2d(_GConv2d):
    """Convolve G-feature maps: ``(B, C_in, G, H, W) -> (B, C_out, G, H', W')``."""

    lifting = False

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and x.shape[1] == self.in_channels and x.shape[2] == self.group.order:
            return x.flatten(1, 2)
        raise ValueError(
            f"GroupConv2d expects a G-feature map (B, {self.in_channels}, {self.group.order}, H, W) "
            f"for group {self.group.name!r}, got shape {tuple(x.shape)}")
