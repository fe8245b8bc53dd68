"""``digits_rot``: scikit-learn's 1797 bundled 8x8 digits, randomly rotated (MNIST-rot in miniature).

Grey values 0..16 become [0, 1]; each digit is upsampled (bilinear) to a box of side
``image_size - 2 * margin`` and zero-padded to ``image_size`` (16: a 12x12 digit), as MNIST puts
a 20x20 digit in a 28x28 image, so that rotating does not cut off strokes. Each image is rotated
about its centre by its own angle, uniform in [0, 2 pi) and drawn from ``seed``. The split is
fixed, whatever the seed: 100 training images per class (MNIST-rot's small-training-set regime)
and the other 797 for testing (~80 per class, 0.13% error resolution).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from repro.data.subsets import split_off_balanced

DIGITS_TRAIN_SIZE = 1000


def rotate_images(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` ``(N, C, H, W)`` counter-clockwise (as displayed) by
    ``angles`` ``(N,)`` radians about its centre; bilinear, zero padding."""
    cos, sin = angles.double().cos(), angles.double().sin()
    zero = torch.zeros_like(cos)
    # affine_grid maps output (x right, y down) to input coordinates: the inverse rotation
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def load_digits_rot(image_size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor,
                                                                  torch.Tensor, torch.Tensor,
                                                                  list[str]]:
    """``(train_x, train_y, test_x, test_y, classes)``: images float32 ``(N, 1, S, S)`` in
    [0, 1] with ``S = image_size``, labels int64 ``(N,)``."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = place_in_canvas(torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0,
                             image_size)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    angles = torch.rand(len(images), generator=gen, dtype=torch.float64) * (2 * math.pi)
    images = rotate_images(images, angles).clamp(0.0, 1.0)
    train, test = digits_split(labels)
    return images[train], labels[train], images[test], labels[test], [str(d) for d in range(10)]


def digits_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` indices: a class-balanced ``DIGITS_TRAIN_SIZE`` for training, the rest
    for testing; fixed, whatever the run's seed."""
    test, train = split_off_balanced(labels, DIGITS_TRAIN_SIZE, 10, seed=0)
    return train, test


def place_in_canvas(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Upsample ``(N, C, h, w)`` to the inner box and zero-pad to ``(N, C, S, S)``; the box's
    corners then stay (almost) inside the image's inscribed circle."""
    margin = round(image_size * (1 - 1 / math.sqrt(2)) / 2)
    inner = image_size - 2 * margin
    scaled = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    return F.pad(scaled, (margin, margin, margin, margin))
