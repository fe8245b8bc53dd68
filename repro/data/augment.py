"""Batched augmentation of ``(B, C, H, W)`` tensors, on whatever device they live.

* ``crop_flip`` (CIFAR10+ in the paper): shift every image by its own ``(dy, dx)``, uniform
  on ``{-pad, .., pad}^2`` (zero fill: a random crop of the zero-padded image), then mirror
  it left-right with probability 1/2.
* ``rot_flip``: the same shifts, then a uniformly random element of D4 (``p4m``: rotations by
  multiples of 90 degrees, optionally mirrored). Needs square images.
"""
from __future__ import annotations

from typing import Callable

import torch

import gcnn
from gcnn.validation import check_choice, check_int

AUGMENT_NAMES = ("none", "crop_flip", "rot_flip")


def build_augment(name: str, pad: int = 2) -> Callable[..., torch.Tensor]:
    """The augmentation ``f(x, generator=None) -> x'`` named ``name``; ``x`` ``(B, C, H, W)``. Draws come from
    ``generator`` (on its own device, moved to the batch's; ``None``: torch's default), so a seeded one reproduces."""
    check_choice("augment.name", name, AUGMENT_NAMES)
    check_int("augment.pad", pad, minimum=0)

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"augment expects a batch (B, C, H, W), got {shape}")
        if name == "none":
            return x
        if name == "rot_flip" and x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rot_flip needs square images, got H x W = {x.shape[-2]} x {x.shape[-1]}")
        x = shift_images(x, *sample_shifts(len(x), pad, generator, x.device), pad)
        if name == "crop_flip":
            return flip_images(x, _randint(2, len(x), generator, x.device).bool())
        return d4_transform_images(x, _randint(8, len(x), generator, x.device))

    return augment


def sample_shifts(batch: int, pad: int, generator: torch.Generator | None,
                  device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column shifts ``(B,)`` each, uniform on ``{-pad, .., pad}``."""
    dy = _randint(2 * pad + 1, batch, generator, device) - pad
    dx = _randint(2 * pad + 1, batch, generator, device) - pad
    return dy, dx


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """``out[b, :, i, j] = x[b, :, i - dy[b], j - dx[b]]`` (zero where that is outside); shapes
    ``(B, C, H, W)`` and ``(B,)``, ``|dy|, |dx| <= pad``. One gather, no host sync."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (torch.arange(h, device=x.device) + pad - dy[:, None]).view(b, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + pad - dx[:, None]).view(b, 1, 1, w)
    padded = padded.gather(2, rows.expand(b, c, h, w + 2 * pad))
    return padded.gather(3, cols.expand(b, c, h, w))


def flip_images(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of ``x`` ``(B, C, H, W)`` where ``flip`` ``(B,)`` is true."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def d4_transform_images(x: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
    """Apply ``p4m`` element ``element[b]`` (index 0..7, see :mod:`gcnn.groups`) to image ``b``."""
    group = gcnn.get_group("p4m")
    height, width = x.shape[-2:]
    pixels = torch.arange(height * width, device=x.device).view(height, width)
    # sources[g, p]: the pixel that element g moves to p (as in gcnn.expansion), so one
    # gather transforms every image by its own element with no host sync.
    sources = torch.stack([group.transform_image(pixels, g).flatten() for g in range(group.order)])
    index = sources[element.to(x.device)].unsqueeze(1).expand(-1, x.shape[1], -1)
    return x.flatten(2).gather(2, index).view_as(x)


def _randint(high: int, size: int, generator: torch.Generator | None,
             device: torch.device | str) -> torch.Tensor:
    draw_on = generator.device if generator is not None else device
    return torch.randint(high, (size,), generator=generator, device=draw_on).to(device)
