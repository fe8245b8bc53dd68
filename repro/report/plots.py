"""Figures of the report: convergence, data efficiency and robustness. Each group has one colour and
marker in every figure (Okabe-Ito, colour-blind safe); matplotlib runs on the Agg backend."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from gcnn import GROUP_NAMES  # noqa: E402
from repro.figures import element_label  # noqa: E402
from repro.io import atomic_write  # noqa: E402
from repro.train.measure import P4M_ELEMENT_NAMES  # noqa: E402

from .render import column_label, network_name  # noqa: E402
from .table import FAMILY_FIELDS, KINDS, PANEL_FIELDS, sort_cells  # noqa: E402
from .values import bound_prefix, group_rows, is_missing, rank  # noqa: E402

GROUP_COLORS = {"z2": "#0072B2", "p4": "#E69F00", "p4m": "#009E73"}
GROUP_MARKERS = {"z2": "o", "p4": "s", "p4m": "^"}
DPI = 150
LOG_SCALE_MIN_RATIO = 3.0  # a log y axis only when the values span more than this factor
P4M_LABELS = {name: element_label("p4m", g) for g, name in enumerate(P4M_ELEMENT_NAMES)}  # r2 -> r²


def _by_group(panel: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of each group in ``panel``, groups in the paper's order."""
    groups = sorted(panel["group"].unique(), key=lambda group: rank(group, GROUP_NAMES))
    return [(group, panel[panel["group"] == group]) for group in groups]


def _panel_title(model: str, data: str, augment: str, train_size: Any, show_size: bool,
                 budget: str | None = None, variant: str | None = None) -> str:
    title = f"{network_name(model)} on {column_label(data, augment, train_size, show_size)}"
    return title + (f", {budget}" if budget else "") + (f"\n{variant}" if variant else "")


def _panel_grid(table: pd.DataFrame, columns: int, size: tuple[float, float],
                always_budget: bool) -> tuple[plt.Figure, list[tuple[Any, pd.DataFrame, str]]]:
    """A figure with a row of ``columns`` axes (each ``size`` inches) per :data:`PANEL_FIELDS` panel of
    ``table``, and ``(axes, panel, title)`` per row. Titles show the size where a family has several, and
    the budget if ``always_budget`` or where the panels differ in it."""
    panels = list(group_rows(sort_cells(table, PANEL_FIELDS), PANEL_FIELDS).items())
    sized = {key[:3] for key, _ in panels if key[3] is not None}
    show_budget = always_budget or len({key[4] for key, _ in panels}) > 1
    figure, axes = plt.subplots(len(panels), columns, figsize=(size[0] * columns, size[1] * len(panels) + 0.9),
                                squeeze=False)
    titles = [_panel_title(model, data, augment, train_size, (model, data, augment) in sized,
                           budget if show_budget else None, variant)
              for (model, data, augment, train_size, budget, variant), _ in panels]
    return figure, [(row, panel, title) for row, (_, panel), title in zip(axes, panels, titles)]


def _line_and_band(axis: plt.Axes, x: pd.Series, stats: pd.DataFrame, group: str, seeds: int, **style: Any) -> None:
    """Mean over seeds as a line, min-max over seeds as a band."""
    color = GROUP_COLORS.get(group, "black")
    axis.plot(x, stats["mean"], color=color, marker=GROUP_MARKERS.get(group, "o"), linewidth=1.8,
              label=f"{group} (n={seeds})", **style)
    if seeds > 1:
        axis.fill_between(x, stats["min"], stats["max"], color=color, alpha=0.2, linewidth=0)


def _style_axis(axis: plt.Axes, title: str, ylabel: str, xlabel: str = "epoch", percent: bool = False) -> None:
    """Title, labels, grid and legend; ``percent`` keeps the y axis within 0-100."""
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    if axis.has_data():
        axis.legend(title="group (seeds)", fontsize=8, title_fontsize=8)
    if percent:
        bottom, top = axis.get_ylim()
        axis.set_ylim(max(0.0, bottom), min(100.0, top))


def _with_title(figure: plt.Figure, title: str) -> plt.Figure:
    """``figure`` with ``title`` above its panels, laid out to leave the title room."""
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def convergence_figure(curves: pd.DataFrame) -> plt.Figure | None:
    """Test error and train loss against epoch, a row of panels per :data:`PANEL_FIELDS`, a line per group."""
    if curves.empty:
        return None
    figure, rows = _panel_grid(curves, 2, (5.5, 3.2), always_budget=False)
    for axes, panel, title in rows:
        for axis, name, label in zip(axes, ("test_error", "train_loss"),
                                     ("test error (%, log scale)", "train loss (cross-entropy, log scale)")):
            for group, runs in _by_group(panel):
                stats = runs.groupby("epoch")[name].agg(["mean", "min", "max"]).reset_index().dropna(subset=["mean"])
                if len(stats):
                    _line_and_band(axis, stats["epoch"], stats, group, runs["path"].nunique(),
                                   markevery=max(1, len(stats) // 12), markersize=5)
            values = panel[name].dropna()
            if len(values) and (values > 0).all() and values.max() > LOG_SCALE_MIN_RATIO * values.min():
                axis.set_yscale("log")  # with plain-number ticks: 1, 2, 5, 10, 20, ...
                axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                axis.yaxis.set_minor_formatter(NullFormatter())
            else:
                label = label.replace(", log scale", "")
            _style_axis(axis, f"{title}: {name.replace('_', ' ')}", label)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            if panel["epoch"].min() == panel["epoch"].max():  # one epoch: in the middle of 0.5 .. 1.5
                axis.set_xlim(panel["epoch"].min() - 0.5, panel["epoch"].min() + 0.5)
                axis.set_xticks([float(panel["epoch"].min())])
    return _with_title(figure, "Convergence of CNNs (z2) and G-CNNs (p4, p4m): line = mean over seeds, "
                               "band = min-max over seeds")


def _size_positions(panel: pd.DataFrame) -> tuple[dict, dict]:
    """x position and tick label of every training-set size; the full set (None) sits at its recorded
    size (``n_train``) or, if unknown, at twice the largest subset."""
    sizes = sorted({int(s) for s in panel["train_size"] if not is_missing(s)})
    positions, labels = {s: float(s) for s in sizes}, {s: str(s) for s in sizes}
    if panel["train_size"].map(is_missing).any():
        known = pd.to_numeric(panel.loc[panel["train_size"].map(is_missing), "n_train"], errors="coerce").dropna()
        full = float(known.iloc[0]) if len(known) else 2.0 * max(sizes or [1])
        positions[None] = full
        labels[None] = f"full\n({int(full)})" if len(known) else "full"
    return positions, labels


def _draw_z2_level(axis: plt.Axes, panel: pd.DataFrame, crossings: pd.DataFrame | None) -> None:
    """Dashed line at the z2 full-data mean error; a star at each G-CNN's crossing."""
    z2_full = panel[(panel["group"] == "z2") & panel["train_size"].map(is_missing)]["test_error_mean"]
    if z2_full.empty:
        return
    level = float(z2_full.mean())
    axis.axhline(level, color=GROUP_COLORS["z2"], linestyle="--", linewidth=1.0, label=f"z2, full data ({level:.2f}%)")
    crossings = [r for r in ([] if crossings is None else crossings.to_dict("records"))
                 if not is_missing(r["size_at_z2_full_error"])]
    for stack, row in enumerate(crossings):  # labels stacked upwards, so close crossings stay readable
        size, color = float(row["size_at_z2_full_error"]), GROUP_COLORS.get(row["group"], "black")
        axis.plot([size], [level], marker="*", markersize=15, color=color, markeredgecolor="black",
                  linestyle="none", zorder=5)
        prefix = bound_prefix(row["crossing"])
        fraction = f"{prefix}{row['fraction_of_full']:.2f}x" if not is_missing(row["fraction_of_full"]) \
            else f"{prefix}{size:.0f}"
        axis.annotate(fraction, (size, level), textcoords="offset points", xytext=(4, 6 + 11 * stack), color=color,
                      fontsize=8, fontweight="bold")


def data_efficiency_figure(summary: pd.DataFrame, efficiency: pd.DataFrame | None = None) -> plt.Figure | None:
    """Final test error against training-set size (log x) from the cells of a :func:`~.table.summarize`,
    a panel per :data:`FAMILY_FIELDS` with two or more sizes, a line per group (bars = min-max over
    seeds), z2's full-data error dashed and a star where each G-CNN reaches it."""
    panels = [(key, panel) for key, panel in group_rows(sort_cells(summary, FAMILY_FIELDS), FAMILY_FIELDS).items()
              if len(set(panel["train_size"])) > 1]
    if not panels:
        return None
    crossings = {} if efficiency is None or efficiency.empty else group_rows(efficiency, FAMILY_FIELDS)
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for axis, (key, panel) in zip(axes[0], panels):
        positions, labels = _size_positions(panel)
        for group, cells in _by_group(panel):
            cells = cells.assign(x=[positions[size] for size in cells["train_size"]]).sort_values("x", kind="stable")
            mean, seeds = cells["test_error_mean"], cells["n"]
            count = f"n≤{seeds.max()}" if seeds.nunique() > 1 else f"n={seeds.max()}"
            axis.errorbar(cells["x"], mean, yerr=[mean - cells["test_error_min"], cells["test_error_max"] - mean],
                          color=GROUP_COLORS.get(group, "black"), marker=GROUP_MARKERS.get(group, "o"), capsize=3,
                          linewidth=1.8, label=f"{group} ({count})")
        _draw_z2_level(axis, panel, crossings.get(key))
        axis.set_xscale("log")
        ticks: dict[float, str] = {}
        for size, position in positions.items():
            ticks[position] = f"{ticks[position]} = full" if position in ticks else labels[size]
        axis.set_xticks(list(ticks), list(ticks.values()))
        axis.minorticks_off()
        model, data, augment, budget, variant = key
        _style_axis(axis, _panel_title(model, data, augment, None, False, budget, variant),
                    "final test error (%)", "training-set size (images, log scale)", percent=True)
    figure.suptitle("Data efficiency: line = mean over seeds, bars = min-max over seeds;\n"
                    "star = training-set size at which a G-CNN matches z2 on the full set", fontsize=10)
    figure.tight_layout()
    return figure


def robustness_figure(summary: pd.DataFrame) -> plt.Figure | None:
    """Test error against the transformation of the test set (a :func:`~.table.robustness_summary`), a row
    of panels per :data:`PANEL_FIELDS`, a column per kind of :data:`KINDS`, a line per group."""
    if summary.empty:
        return None
    kinds = [kind for kind in KINDS if kind in set(summary["kind"])]
    figure, rows = _panel_grid(summary, len(kinds), (6.5, 3.4), always_budget=True)
    for axes, panel, title in rows:
        for axis, kind in zip(axes, kinds):
            for group, stats in _by_group(panel[panel["kind"] == kind].sort_values("order")):
                _line_and_band(axis, stats["order"], stats, group, int(stats["n"].max()), markersize=4)
            lines = panel[panel["kind"] == kind].drop_duplicates("order").sort_values("order")
            step = max(1, len(lines) // 12)
            axis.set_xticks(list(lines["order"])[::step],
                            [P4M_LABELS.get(t, t) if kind == "p4m" else t for t in lines["transform"]][::step])
            _style_axis(axis, f"{title}: {KINDS[kind]}", "test error (%)", f"test set transformed by: {KINDS[kind]}",
                        percent=True)
    return _with_title(figure, "Robustness: test error of the final models on transformed test sets "
                               "(line = mean over seeds, band = min-max)")


def save_figure(figure: plt.Figure | None, stem: str | os.PathLike) -> list[Path]:
    """Write ``figure`` as ``<stem>.png`` and ``<stem>.pdf`` and close it; the paths written."""
    if figure is None:
        return []
    paths = [Path(stem).with_suffix(f".{fmt}") for fmt in ("png", "pdf")]
    for path in paths:
        atomic_write(path, lambda tmp, fmt=path.suffix[1:]: figure.savefig(tmp, format=fmt, dpi=DPI))
    plt.close(figure)
    return paths
