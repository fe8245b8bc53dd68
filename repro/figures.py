"""The equivariance picture: a digit, its rotation, and real G-conv feature maps on the Cayley diagram.

Computing and drawing are separate. :func:`equivariance_frames` runs a randomly
initialised (fixed seed) :class:`gcnn.LiftingConv2d` and :class:`gcnn.GroupConv2d`
on ``g x`` for every element ``g`` of the group and returns, per frame, the exact
arrays that are drawn: the input ``g x`` and, for each layer, the maps of one
channel (one 2-D map per group element) with the diagram position of each map.
:func:`draw_still` and :func:`draw_animation` only render those frames.

Diagram (``gcnn.groups`` conventions: element ``(m, r)`` = "rotate ``r`` quarter
turns, then mirror ``m`` times", index ``4 m + r``). Node ``h`` of the Cayley
diagram shows the output map at group index ``h``; edges join ``h`` to ``h r``
(rotation, arrows) and ``h`` to ``h m`` (mirror, lines). For p4 the nodes form a
cycle, ``r`` one quarter turn counter-clockwise per step. For p4m the rotations
``r^k`` form the inner cycle and the mirrored elements ``m r^k`` the outer cycle,
drawn in the opposite sense so that every mirror edge is radial. The layers'
equivariance ``F(g x)[h] = g . F(x)[g^-1 h]`` then reads: the map at node
``g^-1 h`` moves to node ``h`` and is rotated/flipped by ``g`` on the way. For
``g = r`` every map moves one step counter-clockwise on both cycles; for
``g = m`` the diagram is mirrored (inner and outer cycle swap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from PIL import Image  # noqa: E402

import gcnn  # noqa: E402
from gcnn.validation import check_choice, check_int, invalid  # noqa: E402
from repro.data.digits import place_in_canvas  # noqa: E402
from repro.io import atomic_write  # noqa: E402

__all__ = ["FIGURE_GROUPS", "DEFAULT_SEED", "Panel", "Frame", "FigureFiles", "load_digit", "build_layers",
           "cayley_layout", "element_label", "element_description", "equivariance_frames",
           "equivariance_residual", "draw_still", "draw_animation", "write_equivariance_figures"]

FIGURE_GROUPS = ("p4", "p4m")
DEFAULT_DIGIT = 7          # index into sklearn's digits: a "7" (no rotation or mirror symmetry)
DEFAULT_IMAGE_SIZE = 33    # odd, like the project's upsampled digits but larger for the picture
DEFAULT_SEED = 7           # filters whose channel-0 maps differ clearly between group elements
MAP_SIZE = 1.0             # side of a drawn feature map, in diagram units
CYCLE_RADIUS = 1.2         # p4: the one cycle
INNER_RADIUS, OUTER_RADIUS = 1.2, 2.6  # p4m: rotations inside, mirrored elements outside
LAW_TOLERANCE = 1e-6       # write_equivariance_figures refuses to draw maps further off the law
DPI = 110
ROTATION_COLOR, MIRROR_COLOR, TRACK_COLOR = "#333333", "#009E73", "#E69F00"
MAP_CMAP, IMAGE_CMAP = "RdBu_r", "gray_r"
_SUPERSCRIPT = {2: "\u00b2", 3: "\u00b3"}


@dataclass(frozen=True)
class Panel:
    """One layer's maps for one channel as drawn: ``maps[i]`` (float64 ``(H, W)``) is
    drawn centred at ``positions[i]`` (diagram coordinates ``(x, y)``)."""

    title: str
    maps: np.ndarray       # (order, H, W)
    positions: np.ndarray  # (order, 2)


@dataclass(frozen=True)
class Frame:
    """What one picture shows: the input ``g x`` (``element`` = ``g``) and the layers' panels."""

    group: str
    element: int
    image: np.ndarray      # (H, W)
    panels: tuple[Panel, ...]


class FigureFiles(NamedTuple):
    """The files written for one group and the measured deviation from the law."""

    png: Path
    gif: Path
    residual: float


# ----------------------------------------------------------------------------- group helpers
def _figure_group(group: str | gcnn.Group) -> gcnn.Group:
    name = group.name if isinstance(group, gcnn.Group) else group
    return gcnn.get_group(check_choice("group", name, FIGURE_GROUPS))


def element_label(group: str | gcnn.Group, g: int) -> str:
    """``"e"``, ``"r"``, ``"r²"``, ``"r³"``, ``"m"``, ``"mr"``, ... for element index ``g``."""
    m, r = gcnn.get_group(group).elements[g]
    rotation = "" if r == 0 else "r" + _SUPERSCRIPT.get(r, "")
    return ("m" if m else "") + rotation or "e"


def element_description(group: str | gcnn.Group, g: int) -> str:
    """Plain words for element ``g``: ``"rotate by 90°"``, ``"mirror left-right"``, ..."""
    m, r = gcnn.get_group(group).elements[g]
    if m == 0:
        return f"rotate by {90 * r}\u00b0" if r else "identity"
    return f"rotate by {90 * r}\u00b0, then mirror" if r else "mirror left-right"


def cayley_layout(group: str | gcnn.Group) -> np.ndarray:
    """Diagram position ``(x, y)`` of each element's node, shape ``(order, 2)``: element
    ``(m, r)`` sits at angle ``(-1)^m * 90° * r`` on the inner (``m = 0``) or outer cycle."""
    G = _figure_group(group)
    radii = (INNER_RADIUS, OUTER_RADIUS) if G.mirrors else (CYCLE_RADIUS,)
    angles = [(-1) ** m * r * math.pi / 2 for m, r in G.elements]
    return np.array([[radii[m] * math.cos(a), radii[m] * math.sin(a)]
                     for (m, _), a in zip(G.elements, angles)])


def _plane(x: np.ndarray, G: gcnn.Group, g: int) -> np.ndarray:
    """``g`` acting on the plane of ``x`` (last two axes), as :meth:`Group.transform_image`."""
    return G.transform_image(torch.from_numpy(np.ascontiguousarray(x)), g).numpy()


# ----------------------------------------------------------------------------- computing
def load_digit(index: int = DEFAULT_DIGIT, image_size: int = DEFAULT_IMAGE_SIZE) -> torch.Tensor:
    """Digit ``index`` of scikit-learn's bundled digits, upsampled and padded like the
    project's data (:func:`repro.data.digits.place_in_canvas`): float64 ``(1, 1, S, S)`` in [0, 1]."""
    from sklearn.datasets import load_digits
    images = load_digits().images
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
        raise invalid("digit", index, f"an index in [0, {len(images) - 1}]")
    check_int("image_size", image_size, 8)
    digit = torch.as_tensor(images[index], dtype=torch.float64)[None, None] / 16.0
    return place_in_canvas(digit, image_size)


def build_layers(group: str | gcnn.Group, channels: int = 4, kernel_size: int = 5,
                 seed: int = DEFAULT_SEED) -> tuple[gcnn.LiftingConv2d, gcnn.GroupConv2d]:
    """A float64 lifting layer ``1 -> channels`` and group layer ``channels -> channels``,
    randomly initialised from ``seed``; stride 1 and symmetric padding, so exactly equivariant."""
    G = _figure_group(group)
    torch.manual_seed(check_int("seed", seed, 0))
    pad = kernel_size // 2
    lift = gcnn.LiftingConv2d(1, channels, kernel_size, group=G, padding=pad).double().eval()
    conv = gcnn.GroupConv2d(channels, channels, kernel_size, group=G, padding=pad).double().eval()
    return lift, conv


@torch.no_grad()
def equivariance_frames(group: str | gcnn.Group, *, digit: int = DEFAULT_DIGIT,
                        image_size: int = DEFAULT_IMAGE_SIZE, channel: int = 0, channels: int = 4,
                        kernel_size: int = 5, seed: int = DEFAULT_SEED) -> list[Frame]:
    """One :class:`Frame` per group element ``g`` (in index order, ``e`` first): the layers run
    on ``g x``, and the map at group index ``h`` of ``channel`` is drawn at node ``h``."""
    G = _figure_group(group)
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < channels:
        raise invalid("channel", channel, f"an index in [0, {channels - 1}]")
    image = load_digit(digit, image_size)
    lift, conv = build_layers(G, channels, kernel_size, seed)
    positions = cayley_layout(G)
    frames = []
    for g in range(G.order):
        x = G.transform_image(image, g)
        lifted = lift(x)
        grouped = conv(torch.relu(lifted))
        panels = (Panel(f"lifting layer (channel {channel})", lifted[0, channel].numpy(), positions),
                  Panel(f"group conv layer (channel {channel})", grouped[0, channel].numpy(),
                        positions))
        frames.append(Frame(G.name, g, x[0, 0].numpy(), panels))
    return frames


def _maps_by_node(panel: Panel, layout: np.ndarray) -> np.ndarray:
    """``panel``'s maps reordered so that entry ``n`` is the map drawn at node ``n``."""
    dist = np.linalg.norm(panel.positions[:, None, :] - layout[None, :, :], axis=-1)
    at_node = dist < 1e-9                                  # (maps, nodes)
    if not (at_node.sum(axis=0) == 1).all() or not (at_node.sum(axis=1) == 1).all():
        raise invalid("positions", panel.positions.round(3).tolist(),
                      "one map on each node of the Cayley diagram")
    return panel.maps[at_node.argmax(axis=0)]


def equivariance_residual(frames: Sequence[Frame]) -> float:
    """Largest relative deviation of the drawn arrays from the equivariance law.

    With ``D_g[n]`` the map drawn at node ``n`` in frame ``g`` and ``D_e`` that of the
    identity frame, the law is ``D_g[n] = g . D_e[g^-1 n]`` (``g .`` acting on the plane)
    and the input is ``g . x``. 0 up to round-off means every map is where the group law
    says; a misplaced, unrotated or mislabelled map gives a deviation of order 1."""
    G = _figure_group(frames[0].group)
    base = next((f for f in frames if f.element == 0), None)
    if base is None:
        raise invalid("frames", [f.element for f in frames], "a frame for the identity (element 0)")
    layout = cayley_layout(G)
    worst = 0.0
    for frame in frames:
        g = frame.element
        worst = max(worst, _relative(frame.image, _plane(base.image, G, g)))
        to_source = G.cayley[G.inverse[g]].numpy()        # node n -> node g^-1 n
        for panel, base_panel in zip(frame.panels, base.panels, strict=True):
            expected = _plane(_maps_by_node(base_panel, layout)[to_source], G, g)
            worst = max(worst, _relative(_maps_by_node(panel, layout), expected))
    return worst


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.abs(expected).max()), 1e-300)
    return float(np.abs(got - expected).max()) / scale


# ----------------------------------------------------------------------------- drawing
def _arc(ax: plt.Axes, start: np.ndarray, end: np.ndarray) -> None:
    """A rotation edge: an arrow along the node circle from ``start`` to ``end``, clear of the maps."""
    radius = float(np.linalg.norm(start))
    a0 = math.atan2(start[1], start[0])
    turn = (math.atan2(end[1], end[0]) - a0 + math.pi) % (2 * math.pi) - math.pi
    gap = math.asin(min(1.0, (MAP_SIZE / 2 + 0.08) / radius)) * math.copysign(1, turn)
    angles = np.linspace(a0 + gap, a0 + turn - gap, 24)
    points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    ax.add_patch(FancyArrowPatch(path=MplPath(points), arrowstyle="-|>", mutation_scale=11,
                                 color=ROTATION_COLOR, lw=1.2, zorder=1))


def _mirror_edge(ax: plt.Axes, a: np.ndarray, b: np.ndarray) -> None:
    """A mirror edge: a radial line between the two cycles, clear of the maps."""
    unit = (b - a) / np.linalg.norm(b - a)
    inset = MAP_SIZE / 2 + 0.06
    ax.plot(*np.stack([a + inset * unit, b - inset * unit]).T, color=MIRROR_COLOR, lw=2.0, zorder=1)


def _draw_edges(ax: plt.Axes, G: gcnn.Group, layout: np.ndarray) -> None:
    r, m = G.index((0, 1)), (G.index((1, 0)) if G.mirrors else None)
    for h in range(G.order):
        _arc(ax, layout[h], layout[int(G.cayley[h, r])])
        if m is not None and h < int(G.cayley[h, m]):
            _mirror_edge(ax, layout[h], layout[int(G.cayley[h, m])])


def _draw_diagram(ax: plt.Axes, frame: Frame, panel: Panel, vmax: float) -> None:
    """Edges, node labels and the panel's maps; the map that sat at ``e`` for ``x`` is outlined."""
    G = gcnn.get_group(frame.group)
    layout = cayley_layout(G)
    _draw_edges(ax, G, layout)
    half = MAP_SIZE / 2
    for h, node in enumerate(layout):
        outward = node / np.linalg.norm(node)
        diagonal = (outward + np.array([-outward[1], outward[0]])) / math.sqrt(2)  # the outer, ccw corner
        lx, ly = node + (half * math.sqrt(2) + 0.17) * diagonal
        ax.text(lx, ly, element_label(G, h), ha="center", va="center", fontsize=10,
                fontweight="bold", color="#222222")
    tracked = int(G.cayley[frame.element, 0])   # node g: where the map from node e goes
    for i, (x, y) in enumerate(panel.positions):
        ax.imshow(panel.maps[i], cmap=MAP_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest",
                  extent=(x - half, x + half, y - half, y + half), zorder=2)
        outline = np.allclose([x, y], layout[tracked])
        ax.add_patch(Rectangle((x - half, y - half), MAP_SIZE, MAP_SIZE, fill=False, zorder=3,
                               lw=2.5 if outline else 0.6, ec=TRACK_COLOR if outline else "#555555"))
    extent = float(np.abs(layout).max()) + half + 0.45
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.axis("off")


def _draw_row(axes: Sequence[plt.Axes], frame: Frame, vmaxes: Sequence[float], titles: bool) -> None:
    """One frame: the input ``g x`` and one Cayley diagram per panel."""
    image_ax, *diagram_axes = axes
    label = element_label(frame.group, frame.element)
    image_ax.imshow(frame.image, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    image_ax.set_xticks([])
    image_ax.set_yticks([])
    name = "x" if frame.element == 0 else f"{label}\u00b7x"
    image_ax.set_xlabel(f"input {name}\n({element_description(frame.group, frame.element)})",
                        fontsize=10)
    for ax, panel, vmax in zip(diagram_axes, frame.panels, vmaxes, strict=True):
        _draw_diagram(ax, frame, panel, vmax)
        if titles:
            ax.set_title(panel.title, fontsize=11.5)
    if titles:
        image_ax.set_title("input", fontsize=11.5)


def _legend(fig: plt.Figure, G: gcnn.Group) -> None:
    handles = [Line2D([], [], color=ROTATION_COLOR, marker=">", lw=1.2, label="h \u2192 hr (rotation r)")]
    if G.mirrors:
        handles.append(Line2D([], [], color=MIRROR_COLOR, lw=2.0, label="h \u2014 hm (mirror m)"))
    handles.append(Rectangle((0, 0), 1, 1, fill=False, ec=TRACK_COLOR, lw=2.5,
                             label="the map at node e for input x"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9.5)


def _figure(frames: Sequence[Frame], rows: Sequence[Frame], title: str) -> plt.Figure:
    """A figure with one row per frame of ``rows`` (colour scales shared over all ``frames``)."""
    G = gcnn.get_group(frames[0].group)
    # one colour scale per layer for all frames; the top 0.5% of |values| saturate
    vmaxes = [float(np.percentile(np.abs([f.panels[j].maps for f in frames]), 99.5)) or 1.0
              for j in range(len(frames[0].panels))]
    height = 4.6 if G.mirrors else 3.8
    top = 0.3 + 0.22 * (title.count("\n") + 1)   # inches for the title lines and the column titles
    fig, axes = plt.subplots(len(rows), 1 + len(vmaxes), squeeze=False,
                             figsize=(2.4 + height * len(vmaxes), height * len(rows) + top + 0.45),
                             gridspec_kw={"width_ratios": [0.55] + [1.0] * len(vmaxes)})
    for i, frame in enumerate(rows):
        _draw_row(axes[i], frame, vmaxes, titles=i == 0)
    fig.suptitle(title, fontsize=12.5, y=1 - 0.08 / fig.get_figheight(), va="top")
    _legend(fig, G)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - top / fig.get_figheight(),
                        bottom=0.45 / fig.get_figheight(), wspace=0.04, hspace=0.1)
    return fig


def _still_title(G: gcnn.Group) -> str:
    text = ("rotate the input by 90\u00b0 \u2192 every feature map rotates by 90\u00b0 and moves one "
            "step around the cycle")
    if G.mirrors:
        text += "\nmirror the input \u2192 every map mirrors and crosses to the other cycle"
    return (f"{G.name}: {text}\n(random lifting and group convolution filters; "
            "the map for group element h is drawn at node h)")


def _frame_title(frame: Frame) -> str:
    G = gcnn.get_group(frame.group)
    label = element_label(G, frame.element)
    return (f"{G.name}: input g\u00b7x with g = {label} ({element_description(G, frame.element)})\n"
            "node h shows the map from node g\u207b\u00b9h of the frame for x, transformed by g")


def _save_figure(fig: plt.Figure, path: Path, dpi: int) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def draw_still(frames: Sequence[Frame], path: str | Path, dpi: int = DPI) -> Path:
    """PNG with one row per generator frame: ``x``, ``r x`` (and ``m x`` for p4m)."""
    G = _figure_group(frames[0].group)
    generators = [0, G.index((0, 1))] + ([G.index((1, 0))] if G.mirrors else [])
    rows = [next(f for f in frames if f.element == g) for g in generators]
    return _save_figure(_figure(frames, rows, _still_title(G)), Path(path), dpi)


def _render(fig: plt.Figure, dpi: int) -> Image.Image:
    try:
        fig.set_dpi(dpi)
        fig.canvas.draw()
        return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    finally:
        plt.close(fig)


def draw_animation(frames: Sequence[Frame], path: str | Path, dpi: int = DPI,
                   duration_ms: int = 1500) -> Path:
    """GIF with one frame per group element, in index order (``e, r, r², r³, m, mr, ...``)."""
    images = [_render(_figure(frames, [f], _frame_title(f)), dpi) for f in frames]
    palette = [im.quantize(colors=128, method=Image.Quantize.MEDIANCUT) for im in images]

    def write(tmp: Path) -> None:
        palette[0].save(tmp, format="GIF", save_all=True, append_images=palette[1:],
                        duration=duration_ms, loop=0)
    return atomic_write(Path(path), write)


def write_equivariance_figures(group: str, out: str | Path, *, dpi: int = DPI,
                               **frame_options: int) -> FigureFiles:
    """Compute the frames for ``group``, check them against the law, write
    ``equivariance_<group>.png`` and ``.gif`` into ``out``."""
    frames = equivariance_frames(group, **frame_options)
    residual = equivariance_residual(frames)
    if residual > LAW_TOLERANCE:
        raise RuntimeError(f"the {group} feature maps deviate from the equivariance law by "
                           f"{residual:.3e} (> {LAW_TOLERANCE:g}); not drawing them")
    out = Path(out)
    png = draw_still(frames, out / f"equivariance_{group}.png", dpi=dpi)
    gif = draw_animation(frames, out / f"equivariance_{group}.gif", dpi=dpi)
    return FigureFiles(png, gif, residual)
