"""The equivariance picture: a digit, its rotation, and real G-conv feature maps on the Cayley diagram.

:func:`equivariance_frames` computes the arrays drawn and :func:`equivariance_residual` checks them against the
law ``F(g x)[h] = g . F(x)[g^-1 h]``. Node ``h`` shows the map at group index ``h`` (``4 m + r``, ``gcnn.groups``):
rotations on the inner cycle, counter-clockwise, mirrored elements on the outer one, clockwise (mirror edges are
radial). So ``r`` rotates every map and moves it one step counter-clockwise; ``m`` flips it and swaps the cycles.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path as MplPath
from PIL import Image

import gcnn
from gcnn.equivariance import act
from gcnn.validation import check_choice, check_int
from repro.data.digits import place_in_canvas
from repro.io import atomic_write

FIGURE_GROUPS = ("p4", "p4m")
DIGIT = 7                  # index into sklearn's digits: a "7" (no rotation or mirror symmetry)
DEFAULT_IMAGE_SIZE = 33    # odd, like the project's upsampled digits but larger for the picture
SEED = 7                   # filters whose channel-0 maps differ clearly between group elements
MAP_SIZE = 1.0             # side of a drawn feature map, in diagram units
RADII = (1.2, 2.6)         # the cycle of the rotations, the cycle of the mirrored elements
LAW_TOLERANCE = 1e-6       # write_equivariance_figures refuses to draw maps further off the law
DPI = 110
ROTATION_COLOR, MIRROR_COLOR, TRACK_COLOR = "#333333", "#009E73", "#E69F00"
MAP_CMAP, IMAGE_CMAP = "RdBu_r", "gray_r"
LAYERS = ("lifting layer (channel 0)", "group conv layer (channel 0)")  # the column titles of Frame.maps


@dataclass(frozen=True)
class Frame:
    """What one picture shows: the input ``g x`` (``element`` = ``g``) and, per layer of ``LAYERS``, channel 0's
    maps ``(order, H, W)`` (float64), map ``h`` drawn at node ``h`` of :func:`cayley_layout`."""

    group: str
    element: int
    image: np.ndarray      # (H, W)
    maps: tuple[np.ndarray, ...]


def element_label(group: str | gcnn.Group, g: int) -> str:
    """``"e"``, ``"r"``, ``"r²"``, ``"r³"``, ``"m"``, ``"mr"``, ... for element index ``g``."""
    m, r = gcnn.get_group(group).elements[g]
    return ("m" if m else "") + ("", "r", "r\u00b2", "r\u00b3")[r] or "e"


def element_description(group: str | gcnn.Group, g: int) -> str:
    """Plain words for element ``g``: ``"rotate by 90°"``, ``"mirror left-right"``, ..."""
    m, r = gcnn.get_group(group).elements[g]
    if m == 0:
        return f"rotate by {90 * r}\u00b0" if r else "identity"
    return f"rotate by {90 * r}\u00b0, then mirror" if r else "mirror left-right"


def cayley_layout(group: str | gcnn.Group) -> np.ndarray:
    """Node position ``(x, y)`` of each element, ``(order, 2)``: ``(m, r)`` at angle ``(-1)^m * 90° * r``."""
    polar = [(RADII[m], (-1) ** m * r * math.pi / 2) for m, r in gcnn.get_group(group).elements]
    return np.array([[radius * math.cos(a), radius * math.sin(a)] for radius, a in polar])


@torch.no_grad()
def equivariance_frames(group: str, image_size: int = DEFAULT_IMAGE_SIZE) -> list[Frame]:
    """One :class:`Frame` per element ``g`` (index order, ``e`` first): a seeded float64 lifting layer
    ``1 -> 4`` and group layer ``4 -> 4`` (5x5, stride 1, symmetric padding: exactly equivariant) run on
    ``g x``, ``x`` being a digit placed like the project's data; channel 0's map at index ``h`` is at node ``h``."""
    from sklearn.datasets import load_digits
    G = gcnn.get_group(check_choice("group", group, FIGURE_GROUPS))
    digit = torch.as_tensor(load_digits().images[DIGIT], dtype=torch.float64)[None, None] / 16.0
    image = place_in_canvas(digit, check_int("image_size", image_size, 8))
    torch.manual_seed(SEED)
    lift = gcnn.LiftingConv2d(1, 4, 5, group=G, padding=2).double().eval()
    conv = gcnn.GroupConv2d(4, 4, 5, group=G, padding=2).double().eval()
    frames = []
    for g in range(G.order):
        x = G.transform_image(image, g)
        lifted = lift(x)
        grouped = conv(torch.relu(lifted))
        frames.append(Frame(G.name, g, x[0, 0].numpy(), (lifted[0, 0].numpy(), grouped[0, 0].numpy())))
    return frames


def _deviation(got: np.ndarray, source: np.ndarray, G: gcnn.Group, g: int) -> float:
    """``max |got - g . source|`` relative to ``max |g . source|``, ``g`` acting as the library's
    :func:`gcnn.equivariance.act` does on an image ``(H, W)`` or one channel's maps ``(order, H, W)``."""
    expected = act(G, torch.from_numpy(np.ascontiguousarray(source))[None, None], g)[0, 0].numpy()
    return float(np.abs(got - expected).max()) / max(float(np.abs(expected).max()), 1e-300)


def equivariance_residual(frames: Sequence[Frame]) -> float:
    """Largest relative deviation of the drawn arrays from the law ``D_g[n] = g . D_e[g^-1 n]``
    (``D_g[n]``: the map drawn at node ``n`` in frame ``g``) and of the inputs from ``g . x``.
    ~1e-16 means every map is where the law says; a misplaced or untransformed map gives order 1."""
    G = gcnn.get_group(frames[0].group)
    base = next(f for f in frames if f.element == 0)
    worst = 0.0
    for frame in frames:
        g = frame.element
        worst = max(worst, _deviation(frame.image, base.image, G, g))
        for maps, base_maps in zip(frame.maps, base.maps, strict=True):
            worst = max(worst, _deviation(maps, base_maps, G, g))
    return worst


def _draw_diagram(ax: Axes, frame: Frame, maps: np.ndarray, vmax: float) -> None:
    """Edges, node labels and one layer's ``maps``; the map that sat at ``e`` for ``x`` is outlined."""
    G = gcnn.get_group(frame.group)
    layout = cayley_layout(G)
    half = MAP_SIZE / 2
    for h, node in enumerate(layout):
        # rotation edge h -> hr: an arrow along the node circle, clear of the maps
        end = layout[int(G.cayley[h, G.index((0, 1))])]
        radius, start = float(np.linalg.norm(node)), math.atan2(node[1], node[0])
        turn = (math.atan2(end[1], end[0]) - start + math.pi) % (2 * math.pi) - math.pi
        gap = math.asin(min(1.0, (half + 0.08) / radius)) * math.copysign(1, turn)
        angles = np.linspace(start + gap, start + turn - gap, 24)
        arc = MplPath(np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1))
        ax.add_patch(FancyArrowPatch(path=arc, arrowstyle="-|>", mutation_scale=11, color=ROTATION_COLOR,
                                     lw=1.2, zorder=1))
        mirrored = int(G.cayley[h, G.index((1, 0))]) if G.mirrors else -1
        if h < mirrored:  # mirror edge h - hm: a radial line between the cycles
            unit = (layout[mirrored] - node) / np.linalg.norm(layout[mirrored] - node)
            ends = np.stack([node + (half + 0.06) * unit, layout[mirrored] - (half + 0.06) * unit])
            ax.plot(*ends.T, color=MIRROR_COLOR, lw=2.0, zorder=1)
        # the label sits at the outer, counter-clockwise corner of the map
        outward = node / np.linalg.norm(node)
        diagonal = (outward + np.array([-outward[1], outward[0]])) / math.sqrt(2)
        lx, ly = node + (half * math.sqrt(2) + 0.17) * diagonal
        ax.text(lx, ly, element_label(G, h), ha="center", va="center", fontsize=10, fontweight="bold",
                color="#222222")
    for h, ((x, y), image) in enumerate(zip(layout, maps, strict=True)):
        ax.imshow(image, cmap=MAP_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest",
                  extent=(x - half, x + half, y - half, y + half), zorder=2)
        outline = h == frame.element  # node g = g e: where the map from node e goes
        ax.add_patch(Rectangle((x - half, y - half), MAP_SIZE, MAP_SIZE, fill=False, zorder=3,
                               lw=2.5 if outline else 0.6, ec=TRACK_COLOR if outline else "#555555"))
    extent = float(np.abs(layout).max()) + half + 0.45
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal")
    ax.axis("off")


def _colour_scales(frames: Sequence[Frame]) -> list[float]:
    """Per layer, one colour scale over all ``frames``, saturating the top 0.5% of |values|."""
    return [float(np.percentile(np.abs([f.maps[j] for f in frames]), 99.5)) or 1.0 for j in range(len(LAYERS))]


def _figure(rows: Sequence[Frame], vmaxes: Sequence[float], title: str) -> Figure:
    """One row per frame of ``rows``: the input and a Cayley diagram per layer, drawn on ``vmaxes``."""
    G = gcnn.get_group(rows[0].group)
    height = 4.6 if G.mirrors else 3.8
    top = 0.3 + 0.22 * (title.count("\n") + 1)  # inches for the title lines and the column titles
    fig = Figure(figsize=(2.4 + height * len(vmaxes), height * len(rows) + top + 0.45))
    axes = fig.subplots(len(rows), 1 + len(vmaxes), squeeze=False,
                        gridspec_kw={"width_ratios": [0.55] + [1.0] * len(vmaxes)})
    for i, frame in enumerate(rows):
        image_ax, *diagram_axes = axes[i]
        image_ax.imshow(frame.image, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
        image_ax.set(xticks=[], yticks=[])
        name = "x" if frame.element == 0 else f"{element_label(G, frame.element)}\u00b7x"
        image_ax.set_xlabel(f"input {name}\n({element_description(G, frame.element)})", fontsize=10)
        for ax, maps, vmax in zip(diagram_axes, frame.maps, vmaxes, strict=True):
            _draw_diagram(ax, frame, maps, vmax)
    for ax, column in zip(axes[0], ("input", *LAYERS)):
        ax.set_title(column, fontsize=11.5)
    fig.suptitle(title, fontsize=12.5, y=1 - 0.08 / fig.get_figheight(), va="top")
    handles = [Line2D([], [], color=ROTATION_COLOR, marker=">", lw=1.2, label="h \u2192 hr (rotation r)")]
    if G.mirrors:
        handles.append(Line2D([], [], color=MIRROR_COLOR, lw=2.0, label="h \u2014 hm (mirror m)"))
    handles.append(Rectangle((0, 0), 1, 1, fill=False, ec=TRACK_COLOR, lw=2.5, label="the map at node e for input x"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9.5)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - top / fig.get_figheight(),
                        bottom=0.45 / fig.get_figheight(), wspace=0.04, hspace=0.1)
    return fig


def write_equivariance_figures(group: str, out: str | Path, image_size: int = DEFAULT_IMAGE_SIZE,
                               dpi: int = DPI) -> tuple[Path, Path, float]:
    """Compute the frames for ``group`` and check them against the law; write into ``out`` the still
    ``equivariance_<group>.png`` (rows ``x``, ``r x`` and, for p4m, ``m x``) and the animation
    ``equivariance_<group>.gif`` (one frame per element, in index order); return both paths and the residual."""
    frames = equivariance_frames(group, image_size)
    residual = equivariance_residual(frames)
    if residual > LAW_TOLERANCE:
        raise RuntimeError(f"the {group} feature maps deviate from the equivariance law by "
                           f"{residual:.3e} (> {LAW_TOLERANCE:g}); not drawing them")
    G = gcnn.get_group(group)
    generators = [0, G.index((0, 1))] + ([G.index((1, 0))] if G.mirrors else [])
    mirror = "\nmirror the input \u2192 every map mirrors and crosses to the other cycle" if G.mirrors else ""
    title = (f"{G.name}: rotate the input by 90\u00b0 \u2192 every feature map rotates by 90\u00b0 and moves one "
             f"step around the cycle{mirror}\n(random lifting and group convolution filters; "
             "the map for group element h is drawn at node h)")
    vmaxes = _colour_scales(frames)  # shared by the still and every frame of the animation
    still = _figure([frames[g] for g in generators], vmaxes, title)
    png = atomic_write(Path(out) / f"equivariance_{group}.png", lambda tmp: still.savefig(tmp, format="png", dpi=dpi))
    images = []
    for g, frame in enumerate(frames):
        title = (f"{G.name}: input g\u00b7x with g = {element_label(G, g)} ({element_description(G, g)})\n"
                 "node h shows the map from node g\u207b\u00b9h of the frame for x, transformed by g")
        buffer = io.BytesIO()
        _figure([frame], vmaxes, title).savefig(buffer, format="png", dpi=dpi)
        images.append(Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT))
    gif = atomic_write(Path(out) / f"equivariance_{group}.gif", lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=1500, loop=0))
    return png, gif, residual
