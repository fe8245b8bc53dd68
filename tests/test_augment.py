"""repro.data.augment: exact per-image checks against a naive reference, determinism, errors."""
from __future__ import annotations

import math

import pytest
import torch

from repro.data import build_augment
from repro.data.augment import (d4_transform_images, flip_images, rotate_images_bilinear,
                                 sample_reference_rotations, sample_shifts, shift_images)


def naive_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[:, i, j] = img[:, i - dy, j - dx]``, zero outside; one ``(C, H, W)`` image."""
    _, h, w = img.shape
    out = torch.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = img[:, i - dy, j - dx]
    return out


def d4_orbit(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images g(img), g in D4, built from rot90 and flip alone."""
    rotations = [torch.rot90(img, k, dims=(-2, -1)) for k in range(4)]
    return rotations + [r.flip(-1) for r in rotations]


def matches(out: torch.Tensor, candidates: dict) -> list:
    return [key for key, cand in candidates.items() if torch.equal(out, cand)]


def distinct_batch(b: int, c: int = 2, h: int = 7, w: int = 7, dtype=torch.float32) -> torch.Tensor:
    """Positive, pairwise different pixel values: every transform is identifiable."""
    return (torch.randperm(b * c * h * w, generator=torch.Generator().manual_seed(0)) + 1) \
        .reshape(b, c, h, w).to(dtype)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- building blocks
def test_shift_images_matches_naive_reference():
    x = distinct_batch(9, h=6, w=5)
    dy = torch.tensor([-2, -1, 0, 1, 2, 0, 2, -2, 1])
    dx = torch.tensor([0, 2, -2, 1, -1, 0, 2, -2, -1])
    out = shift_images(x, dy, dx, pad=2)
    for b in range(9):
        assert torch.equal(out[b], naive_shift(x[b], int(dy[b]), int(dx[b])))


def test_shift_larger_than_image_gives_zeros():
    x = distinct_batch(2, h=3, w=3)
    assert torch.equal(shift_images(x, torch.tensor([4, 0]), torch.tensor([0, -3]), pad=4),
                       torch.zeros_like(x))


def test_flip_images_only_where_asked():
    x = distinct_batch(3)
    out = flip_images(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    assert torch.equal(out[2], x[2].flip(-1))


def test_d4_transform_images_covers_the_orbit():
    x = distinct_batch(8)
    out = d4_transform_images(x, torch.arange(8))
    found = {matches(out[g], dict(enumerate(d4_orbit(x[g]))))[0] for g in range(8)}
    assert found == set(range(8))  # the 8 indices give the 8 distinct elements of D4
    assert torch.equal(out[0], x[0])


def test_sample_shifts_uniform_support():
    dy, dx = sample_shifts(2000, 2, seeded(), "cpu")
    for d in (dy, dx):
        counts = torch.bincount(d + 2, minlength=5)
        assert len(counts) == 5 and int(counts.min()) > 300  # ~400 each


def test_reference_rotation_angles_are_pi_degrees_at_most():
    degrees = sample_reference_rotations(5000, seeded(), "cpu")
    assert degrees.dtype == torch.float64 and degrees.shape == (5000,)
    assert float(degrees.min()) >= -math.pi and float(degrees.max()) < math.pi  # degrees, not radians
    assert float(degrees.min()) < -3.1 and float(degrees.max()) > 3.1 and abs(float(degrees.mean())) < 0.1
    draws = [sample_reference_rotations(8, seeded(seed), "cpu") for seed in (4, 4, 5)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotation_by_zero_is_exactly_the_input(dtype):
    x = torch.rand(3, 2, 9, 7, generator=seeded(), dtype=dtype)
    assert torch.equal(rotate_images_bilinear(x, torch.zeros(3, dtype=torch.float64)), x)


def test_quarter_turns_are_rot90_counter_clockwise():
    x = torch.rand(2, 1, 6, 6, generator=seeded(), dtype=torch.float64)
    turned = rotate_images_bilinear(x, torch.tensor([90.0, -90.0]))
    torch.testing.assert_close(turned[0], torch.rot90(x[0], 1, dims=(-2, -1)), rtol=0, atol=1e-12)
    torch.testing.assert_close(turned[1], torch.rot90(x[1], -1, dims=(-2, -1)), rtol=0, atol=1e-12)
    assert (turned[0] - torch.rot90(x[0], -1, dims=(-2, -1))).abs().max() > 0.1  # the sense is tested


def test_rotation_by_45_degrees_by_hand():
    """3x3 image, centre (1, 1), s = sin 45 = cos 45: output (row 0, col 1) samples the input at
    (row 1 - s, col 1 + s); output (0, 0) at (1 - 2 s, 1), between row -1 (zero fill) and row 0."""
    x = torch.arange(1.0, 10.0, dtype=torch.float64).view(1, 1, 3, 3)
    out = rotate_images_bilinear(x, torch.tensor([45.0]))[0, 0]
    s = math.sqrt(0.5)
    a, b = 1 - s, s  # fractional row of 1 - s, fractional column of 1 + s
    expected = (1 - a) * (1 - b) * x[0, 0, 0, 1] + (1 - a) * b * x[0, 0, 0, 2] + a * (1 - b) * x[0, 0, 1, 1] \
        + a * b * x[0, 0, 1, 2]
    assert abs(float(out[0, 1] - expected)) < 1e-12
    assert abs(float(out[0, 0] - (2 - 2 * s) * x[0, 0, 0, 1])) < 1e-12  # weight 2s - 1 on the zero border
    assert float(out[1, 1]) == 5.0  # the centre stays


def test_rotation_matches_scipy_with_skimage_defaults():
    """skimage.transform.rotate(order=1, mode="constant", cval=0) is scipy's rotate with
    mode="grid-constant" (neighbours outside the image count as cval); non-square too."""
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(4, 2, 9, 7, generator=seeded(), dtype=torch.float64)
    degrees = torch.tensor([2.5, -3.1, 0.4, 40.0], dtype=torch.float64)
    out = rotate_images_bilinear(x, degrees)
    for b in range(4):
        for c in range(2):
            ref = ndimage.rotate(x[b, c].numpy(), float(degrees[b]), reshape=False, order=1,
                                 mode="grid-constant", cval=0.0, prefilter=False)
            assert abs(out[b, c].numpy() - ref).max() < 1e-12


def test_reference_rotation_rotates_each_image_by_its_drawn_angle():
    x = torch.rand(16, 1, 28, 28, generator=seeded())
    out = build_augment("reference_rotation")(x, seeded(3))
    expected = rotate_images_bilinear(x, sample_reference_rotations(16, seeded(3), "cpu"))
    assert torch.equal(out, expected) and out.dtype == torch.float32
    assert not torch.equal(out, x)


def test_reference_rotation_needs_floating_point():
    with pytest.raises(ValueError, match="reference_rotation interpolates: it needs a floating-point batch, "
                                         "got torch.uint8"):
        build_augment("reference_rotation")(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


# ----------------------------------------------------------------------------- build_augment
def test_none_is_identity():
    x = distinct_batch(4)
    assert torch.equal(build_augment("none")(x, seeded()), x)
    assert torch.equal(build_augment("none", pad=4)(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
@pytest.mark.parametrize("name", ["none", "crop_flip", "rot_flip"])
def test_shape_and_dtype_preserved(name, dtype):
    x = distinct_batch(5, c=3, h=8, w=8).remainder(250).to(dtype)
    out = build_augment(name)(x, seeded())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_crop_flip_each_image_is_a_shifted_flipped_copy():
    x, pad = distinct_batch(64), 2
    before = x.clone()
    out = build_augment("crop_flip", pad)(x, seeded(1))
    assert torch.equal(x, before)  # input untouched
    seen = set()
    for b in range(len(x)):
        candidates = {(dy, dx, f): (naive_shift(x[b], dy, dx).flip(-1) if f else
                                    naive_shift(x[b], dy, dx))
                      for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                      for f in (0, 1)}
        found = matches(out[b], candidates)
        assert len(found) == 1, f"image {b} is no shifted/flipped copy of its input"
        seen.add(found[0])
    assert {key[2] for key in seen} == {0, 1}
    assert {key[0] for key in seen} == {key[1] for key in seen} == set(range(-pad, pad + 1))


def test_crop_flip_pad_zero_is_flip_only():
    x = distinct_batch(32)
    out = build_augment("crop_flip", 0)(x, seeded())
    flipped = [torch.equal(out[b], x[b].flip(-1)) for b in range(32)]
    kept = [torch.equal(out[b], x[b]) for b in range(32)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_rot_flip_each_image_is_a_d4_copy_of_a_shifted_input():
    x, pad = distinct_batch(64), 2
    out = build_augment("rot_flip", pad)(x, seeded(2))
    elements, shifts = set(), set()
    for b in range(len(x)):
        candidates = {(dy, dx, g): img
                      for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                      for g, img in enumerate(d4_orbit(naive_shift(x[b], dy, dx)))}
        found = matches(out[b], candidates)
        assert len(found) == 1, f"image {b} is no D4 copy of a shifted input"
        elements.add(found[0][2])
        shifts.add(found[0][:2])
    assert elements == set(range(8)) and len(shifts) > 10


def test_rot_flip_needs_square_images():
    with pytest.raises(ValueError, match="rot_flip needs square images, got H x W = 6 x 7"):
        build_augment("rot_flip")(torch.zeros(2, 1, 6, 7))
    assert build_augment("crop_flip")(torch.zeros(2, 1, 6, 7)).shape == (2, 1, 6, 7)


@pytest.mark.parametrize("name", ["crop_flip", "rot_flip", "reference_rotation"])
def test_seeded_generator_is_deterministic(name):
    x = distinct_batch(32)
    augment = build_augment(name)
    assert torch.equal(augment(x, seeded(5)), augment(x, seeded(5)))
    assert not torch.equal(augment(x, seeded(5)), augment(x, seeded(6)))
    torch.manual_seed(3)
    first = augment(x)
    torch.manual_seed(3)
    assert torch.equal(augment(x), first)  # None: torch's default generator


def test_empty_batch():
    for name in ("none", "crop_flip", "rot_flip", "reference_rotation"):
        assert build_augment(name)(torch.zeros(0, 3, 8, 8), seeded()).shape == (0, 3, 8, 8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["crop_flip", "rot_flip"])
def test_cuda_batch_with_cpu_or_cuda_generator(name):
    x = distinct_batch(16)
    augment = build_augment(name)
    on_cpu = augment(x, seeded(7))
    from_cpu_gen = augment(x.cuda(), seeded(7))
    assert from_cpu_gen.device.type == "cuda"
    assert torch.equal(from_cpu_gen.cpu(), on_cpu)  # same draws, same result
    cuda_gen = torch.Generator(device="cuda").manual_seed(7)
    assert augment(x.cuda(), cuda_gen).device.type == "cuda"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reference_rotation_on_cuda_matches_the_cpu():
    """Same draws from a CPU generator; the device's sin/cos may differ in the last bit, so close, not equal."""
    x = torch.rand(64, 1, 28, 28, generator=seeded())
    augment = build_augment("reference_rotation")
    on_cuda = augment(x.cuda(), seeded(7))
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), augment(x, seeded(7)), rtol=0, atol=1e-5)
    assert augment(x.cuda(), torch.Generator(device="cuda").manual_seed(7)).device.type == "cuda"


# ----------------------------------------------------------------------------- errors
def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"^augment.name='cutout' is not valid; expected one of "
                                         r"\['none', 'crop_flip', 'rot_flip', 'reference_rotation'\]$"):
        build_augment("cutout")


@pytest.mark.parametrize("pad", [-1, 1.5, True, "2"])
def test_bad_pad(pad):
    with pytest.raises(ValueError,
                       match=r"^augment.pad=.* is not valid; expected an integer >= 0$"):
        build_augment("crop_flip", pad)


@pytest.mark.parametrize("name", ["none", "crop_flip", "rot_flip", "reference_rotation"])
def test_non_batch_input(name):
    expected = r"augment expects a batch \(B, C, H, W\), got \(3, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        build_augment(name)(torch.zeros(3, 8, 8))
