"""Batched augmentation of ``(B, C, H, W)`` tensors, on whatever device they live.

* ``crop_flip`` (CIFAR10+ in the paper): shift every image by its own ``(dy, dx)``, uniform
  on ``{-pad, .., pad}^2`` (zero fill: a random crop of the zero-padded image), then mirror
  it left-right with probability 1/2.
* ``rot_flip``: the same shifts, then a uniformly random element of D4 (``p4m``: rotations by
  multiples of 90 degrees, optionally mirrored). Needs square images.
* ``reference_rotation`` (the reference code's MNIST-rot training): rotate every image about its
  centre by its own angle, bilinear, zero fill, as ``gconv_experiments.augmentation.rotate_transform_batch``
  does with ``skimage.transform.rotate``: it draws ``uniform(-0.5, 0.5) * 2 pi`` and skimage reads
  that as degrees, so the angles are uniform in [-pi, pi) DEGREES (at most about 3.14 degrees).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

import gcnn
from gcnn.validation import check_choice, check_int

AUGMENT_NAMES = ("none", "crop_flip", "rot_flip", "reference_rotation")
REFERENCE_ROTATION_SPAN = 2 * math.pi  # reference code: rotation=2*np.pi, taken by skimage as degrees


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
        if name == "reference_rotation":
            if not x.is_floating_point():
                raise ValueError(f"reference_rotation interpolates: it needs a floating-point batch, got {x.dtype}")
            return rotate_images_bilinear(x, sample_reference_rotations(len(x), generator, x.device))
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


def sample_reference_rotations(batch: int, generator: torch.Generator | None,
                               device: torch.device | str) -> torch.Tensor:
    """Float64 angles ``(B,)`` in degrees, ``uniform(-0.5, 0.5) * 2 pi`` as the reference code draws
    them (meant as radians, read as degrees by ``skimage.transform.rotate``): within [-pi, pi)."""
    draw_on = generator.device if generator is not None else device
    uniform = torch.rand(batch, generator=generator, device=draw_on, dtype=torch.float64)
    return ((uniform - 0.5) * REFERENCE_ROTATION_SPAN).to(device)


def rotate_images_bilinear(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """``skimage.transform.rotate(image, degrees[b])`` for each image ``b`` of ``x`` ``(B, C, H, W)``,
    every channel alike, with skimage's defaults: counter-clockwise as displayed, about the array centre
    ``((H - 1) / 2, (W - 1) / 2)``, same size, bilinear (``order=1``), zero outside (``mode="constant"``,
    ``cval=0``). Output pixel ``p`` samples the input at ``R(angle) (p - c) + c`` in (column, row)
    coordinates; a neighbour outside the image counts as 0. Angle 0 returns ``x`` exactly. The reference's
    scaling into [-1, 1] and skimage's clipping to the input's range are no-ops for this interpolation."""
    b, c, h, w = x.shape
    angle = torch.deg2rad(degrees.to(x.device, torch.float64)).view(b, 1, 1)
    cos, sin = angle.cos(), angle.sin()
    rows = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1) - (h - 1) / 2
    cols = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w) - (w - 1) / 2
    src_col = cos * cols - sin * rows + (w - 1) / 2  # (B, H, W)
    src_row = sin * cols + cos * rows + (h - 1) / 2
    top, left = src_row.floor(), src_col.floor()
    frac_row, frac_col = (src_row - top).to(x.dtype), (src_col - left).to(x.dtype)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1)).flatten(2)  # a zero border: neighbours outside
    out = torch.zeros_like(x)
    for d_row, row_weight in ((0, 1 - frac_row), (1, frac_row)):
        rows_in = (top.long() + d_row + 1).clamp(0, h + 1)  # + 1: the border
        for d_col, col_weight in ((0, 1 - frac_col), (1, frac_col)):
            cols_in = (left.long() + d_col + 1).clamp(0, w + 1)
            index = (rows_in * (w + 2) + cols_in).view(b, 1, h * w).expand(b, c, h * w)
            out += (row_weight * col_weight).unsqueeze(1) * padded.gather(2, index).view(b, c, h, w)
    return out


def _randint(high: int, size: int, generator: torch.Generator | None,
             device: torch.device | str) -> torch.Tensor:
    draw_on = generator.device if generator is not None else device
    return torch.randint(high, (size,), generator=generator, device=draw_on).to(device)
