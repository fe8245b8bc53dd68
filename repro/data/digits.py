"""``digits_rot``: scikit-learn's bundled 8x8 digits, randomly rotated (an MNIST-rot in miniature).

Protocol (the MNIST-rot one, scaled down so that it trains on a CPU in minutes):

1. the 1797 real 8x8 digits of ``sklearn.datasets.load_digits`` (no download),
   grey values 0..16 scaled to [0, 1];
2. each digit upsampled (bilinear) to an inner box of side
   ``image_size - 2 * margin`` and zero-padded to ``image_size`` (default 16 ->
   a 12x12 digit in a 16x16 image). MNIST puts a 20x20 digit in a 28x28 image
   for the same reason: the box's corners then stay (almost) inside the
   image's inscribed circle, so rotating does not cut off strokes;
3. each image rotated about its centre by its own angle drawn uniformly from
   [0, 2 pi) (bilinear, zeros outside), angles from ``seed``;
4. a fixed class-stratified split, independent of ``seed``: 1000 training
   images (100 per class) and the remaining 797 for testing. 100 per class
   keeps the small-training-set regime of MNIST-rot (12k training images)
   while leaving ~80 test images per class (0.13% error resolution).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from repro.data.subsets import split_off_balanced

__all__ = ["load_digits_rot", "rotate_images", "digits_split", "place_in_canvas",
           "DIGITS_TRAIN_SIZE", "DIGITS_SPLIT_SEED"]

DIGITS_TRAIN_SIZE = 1000
DIGITS_SPLIT_SEED = 0
DIGIT_CLASSES = [str(d) for d in range(10)]


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
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    images = place_in_canvas(images, image_size)
    gen = torch.Generator().manual_seed(seed)
    angles = torch.rand(len(images), generator=gen, dtype=torch.float64) * (2 * math.pi)
    images = rotate_images(images, angles).clamp(0.0, 1.0)
    train, test = digits_split(labels)
    return images[train], labels[train], images[test], labels[test], list(DIGIT_CLASSES)


def place_in_canvas(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Upsample ``(N, C, h, w)`` to the inner box and zero-pad to ``(N, C, S, S)``."""
    margin = round(image_size * (1 - 1 / math.sqrt(2)) / 2)
    inner = image_size - 2 * margin
    scaled = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    return F.pad(scaled, (margin, margin, margin, margin))


def digits_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed ``(train, test)`` sorted indices into the 1797 digits (labels ``(N,)``):
    100 training images per class, the rest for testing."""
    test, train = split_off_balanced(labels, DIGITS_TRAIN_SIZE, 10, DIGITS_SPLIT_SEED)
    return train, test
