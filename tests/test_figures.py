"""The equivariance picture (``repro/figures.py``, ``scripts/figures.py``): the arrays drawn
obey the equivariance law exactly, a misplaced map is caught, and the script writes the files."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import run_script
from PIL import Image

import gcnn
from repro.figures import (FIGURE_GROUPS, Frame, cayley_layout, element_label,
                           equivariance_frames, equivariance_residual)

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10          # float64: exact up to round-off
MISPLACED = 1e-2     # a wrong picture is off by order 1
SIZE = 17            # small odd image: fast, and exactly equivariant


@pytest.fixture(scope="module", params=FIGURE_GROUPS)
def frames(request) -> list[Frame]:
    return equivariance_frames(request.param, image_size=SIZE)


def _element(frames: list[Frame], g: int) -> Frame:
    return next(f for f in frames if f.element == g)


def _node_maps(frame: Frame, layer: int) -> dict[tuple[float, float], np.ndarray]:
    """Map drawn at each node, keyed by its rounded diagram coordinates."""
    layout = cayley_layout(frame.group)
    return {tuple(np.round(xy, 9)): m for xy, m in zip(layout, frame.maps[layer], strict=True)}


def _replace_maps(frames: list[Frame], g: int, layer: int, maps: np.ndarray) -> list[Frame]:
    """A copy of ``frames`` whose frame ``g`` shows ``maps`` for ``layer``."""
    def edit(frame: Frame) -> Frame:
        if frame.element != g:
            return frame
        layers = list(frame.maps)
        layers[layer] = maps
        return dataclasses.replace(frame, maps=tuple(layers))
    return [edit(f) for f in frames]


# --- the law holds --------------------------------------------------------------------------

def test_frames_are_float64_one_per_element_with_one_map_per_node(frames):
    G = gcnn.get_group(frames[0].group)
    assert [f.element for f in frames] == list(range(G.order))
    for frame in frames:
        assert frame.image.dtype == np.float64 and frame.image.shape == (SIZE, SIZE)
        for maps in frame.maps:
            assert maps.shape == (G.order, SIZE, SIZE) and maps.dtype == np.float64
    assert cayley_layout(G).shape == (G.order, 2) and len(np.unique(cayley_layout(G).round(9), axis=0)) == G.order


def test_drawn_arrays_obey_the_equivariance_law_exactly(frames):
    assert equivariance_residual(frames) < TOL


def test_rotating_the_input_rotates_each_map_and_moves_it_one_step_counter_clockwise(frames):
    """Independent of ``equivariance_residual``: in frame ``r`` the map at the position one
    quarter turn counter-clockwise of node ``h`` is frame ``e``'s map at ``h``, rotated (np.rot90)."""
    G = gcnn.get_group(frames[0].group)
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])
    base, turned = _element(frames, 0), _element(frames, G.index((0, 1)))
    assert np.abs(turned.image - np.rot90(base.image)).max() < TOL
    for layer in range(len(base.maps)):
        after = _node_maps(turned, layer)
        for xy, before in _node_maps(base, layer).items():
            moved = tuple(np.round(quarter @ np.array(xy), 9))
            assert np.abs(after[moved] - np.rot90(before)).max() < TOL * np.abs(before).max()


def test_mirroring_the_input_flips_each_map_and_moves_it_to_the_other_cycle():
    """Independent of ``equivariance_residual``: node ``(m, r)`` of frame ``m`` shows frame
    ``e``'s map at node ``(1 - m, r)`` flipped left-right (np.fliplr)."""
    frames = equivariance_frames("p4m", image_size=SIZE)
    G, layout = gcnn.get_group("p4m"), cayley_layout("p4m")
    base, mirrored = _element(frames, 0), _element(frames, G.index((1, 0)))
    assert np.abs(mirrored.image - np.fliplr(base.image)).max() < TOL
    for layer in range(len(base.maps)):
        before, after = _node_maps(base, layer), _node_maps(mirrored, layer)
        for m, r in G.elements:
            source = tuple(np.round(layout[G.index((1 - m, r))], 9))
            target = tuple(np.round(layout[G.index((m, r))], 9))
            scale = np.abs(before[source]).max()
            assert np.abs(after[target] - np.fliplr(before[source])).max() < TOL * scale


def test_the_inner_cycle_is_the_rotations_and_labels_follow_the_convention():
    layout = cayley_layout("p4m")
    radii = np.linalg.norm(layout, axis=1)
    assert radii[:4].max() < radii[4:].min()
    assert [element_label("p4m", g) for g in range(8)] == ["e", "r", "r\u00b2", "r\u00b3",
                                                           "m", "mr", "mr\u00b2", "mr\u00b3"]


# --- a wrong picture is caught (negative controls) ------------------------------------------

def _swap_two_maps(frames: list[Frame], G: gcnn.Group) -> list[Frame]:
    g = G.index((0, 1))
    maps = _element(frames, g).maps[0].copy()
    maps[[0, 1]] = maps[[1, 0]]
    return _replace_maps(frames, g, 0, maps)


def _built_from_inverse(frames: list[Frame], G: gcnn.Group) -> list[Frame]:
    """Frame ``r`` shows the input and maps of ``r^-1`` (``g`` used where ``g^-1`` belongs)."""
    g = G.index((0, 1))
    wrong = dataclasses.replace(_element(frames, int(G.inverse[g])), element=g)
    return [wrong if f.element == g else f for f in frames]


def _moved_but_not_rotated(frames: list[Frame], G: gcnn.Group) -> list[Frame]:
    g = G.index((0, 1))
    maps = _element(frames, 0).maps[1][G.cayley[G.inverse[g]].numpy()]
    return _replace_maps(frames, g, 1, maps)


def _rotated_but_not_moved(frames: list[Frame], G: gcnn.Group) -> list[Frame]:
    g = G.index((0, 1))
    maps = np.rot90(_element(frames, 0).maps[1], axes=(-2, -1))
    return _replace_maps(frames, g, 1, maps)


@pytest.mark.parametrize("corrupt", [_swap_two_maps, _built_from_inverse,
                                     _moved_but_not_rotated, _rotated_but_not_moved],
                         ids=lambda f: f.__name__.strip("_"))
def test_the_law_check_catches_a_wrong_picture(frames, corrupt: Callable):
    G = gcnn.get_group(frames[0].group)
    assert equivariance_residual(corrupt(frames, G)) > MISPLACED


@pytest.mark.parametrize("group, image_size, name", [("z2", 9, "group"), ("p4", 5, "image_size")])
def test_bad_arguments_name_the_value(group, image_size, name):
    with pytest.raises(ValueError, match=f"{name}=.* is not valid; expected"):
        equivariance_frames(group, image_size=image_size)


# --- the script -----------------------------------------------------------------------------

def test_script_writes_png_and_gif_for_each_group(tmp_path):
    out = tmp_path / "figures"
    done = run_script("figures", "--out", str(out), "--groups", "p4", "p4m", "--image-size", "9", "--dpi", "30")
    assert done.returncode == 0 and "equivariance law holds" in done.stdout
    for group, order in (("p4", 4), ("p4m", 8)):
        Image.open(out / f"equivariance_{group}.png").verify()
        with Image.open(out / f"equivariance_{group}.gif") as gif:
            assert gif.n_frames == order


def test_script_rejects_an_unknown_group(tmp_path):
    done = run_script("figures", "--out", str(tmp_path), "--groups", "z2")
    assert done.returncode == 2 and "invalid choice: 'z2'" in done.stderr


def test_script_reports_a_bad_value_in_one_line(tmp_path):
    done = run_script("figures", "--out", str(tmp_path), "--groups", "p4", "--image-size", "5")
    assert done.returncode == 2 and done.stderr == "error: image_size=5 is not valid; expected an integer >= 8\n"
