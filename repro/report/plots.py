"""Figures of the report: convergence curves, data efficiency and robustness.

Every figure draws each group in the same colour and marker
(:data:`GROUP_COLORS`, :data:`GROUP_MARKERS`), so z2 / p4 / p4m read the same
across all plots. Matplotlib runs on the non-interactive Agg backend.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from repro.io import atomic_write  # noqa: E402

from .efficiency import FAMILY_FIELDS  # noqa: E402
from .robustness import KINDS  # noqa: E402
from .table import AUGMENT_ORDER, GROUP_ORDER, MODEL_ORDER, PANEL_FIELDS, column_label, network_name  # noqa: E402

__all__ = ["GROUP_COLORS", "GROUP_MARKERS", "group_color", "convergence_figure", "plot_convergence",
           "data_efficiency_figure", "plot_data_efficiency", "robustness_figure", "plot_robustness"]

# Okabe-Ito colour-blind-safe palette; one fixed colour per group in every figure.
GROUP_COLORS = {"z2": "#0072B2", "p4": "#E69F00", "p4m": "#009E73"}
GROUP_MARKERS = {"z2": "o", "p4": "s", "p4m": "^"}
_EXTRA_COLORS = ("#CC79A7", "#D55E00", "#56B4E9", "#000000")
DPI = 150
LOG_SCALE_MIN_RATIO = 3.0  # a log y axis only when the values span more than this factor


def group_color(group: str) -> str:
    """The group's fixed colour (other names get stable extra colours)."""
    if group in GROUP_COLORS:
        return GROUP_COLORS[group]
    return _EXTRA_COLORS[sum(map(ord, str(group))) % len(_EXTRA_COLORS)]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rank(value: Any) -> tuple:
    """Sort key: numbers (numerically), then text, then missing values."""
    if _is_missing(value):
        return (2, 0.0, "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _group_sort(groups: list) -> list:
    return sorted(groups, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), str(g)))


def _panel_rank(name: str, value: Any) -> tuple:
    """Panels in the tables' order: networks and augmentations as in the paper, sizes ascending."""
    preferred = {"model": MODEL_ORDER, "augment": AUGMENT_ORDER}.get(name, ())
    if value in preferred:
        return (-1, float(preferred.index(value)), "")
    return _rank(value)


def _panels(table: pd.DataFrame, key: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """Rows of ``table`` grouped by ``key`` (None-safe), in sorted key order."""
    keys = [tuple(None if _is_missing(v) else v for v in row)
            for row in table[key].itertuples(index=False, name=None)]
    order = sorted(dict.fromkeys(keys), key=lambda k: tuple(_panel_rank(n, v) for n, v in zip(key, k)))
    return [(k, table[[candidate == k for candidate in keys]]) for k in order]


def _panel_title(model: str, data: str, augment: str, train_size: Any, show_size: bool,
                 budget: str | None = None, variant: str | None = None) -> str:
    title = f"{network_name(model)} on {column_label(data, augment, train_size, show_size)}"
    return title + (f", {budget}" if budget else "") + (f"\n{variant}" if variant else "")


def _log_axis(axis: plt.Axes) -> None:
    """Log scale with plain-number tick labels (1, 2, 5, 10, 20, ...)."""
    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(NullFormatter())


def _draw_band(axis: plt.Axes, curves: pd.DataFrame, column: str, group: str) -> None:
    """Mean over seeds as a line, min-max over seeds as a band."""
    stats = curves.groupby("epoch")[column].agg(["mean", "min", "max", "count"]).reset_index()
    stats = stats.dropna(subset=["mean"])
    if stats.empty:
        return
    seeds = curves["path"].nunique()
    color = group_color(group)
    axis.plot(stats["epoch"], stats["mean"], color=color, marker=GROUP_MARKERS.get(group, "o"),
              markevery=max(1, len(stats) // 12), markersize=5, linewidth=1.8, label=f"{group} (n={seeds})")
    if seeds > 1:
        axis.fill_between(stats["epoch"], stats["min"], stats["max"], color=color, alpha=0.2, linewidth=0)


def convergence_figure(curves: pd.DataFrame) -> plt.Figure | None:
    """Test error (%) and train loss against epoch, one row of panels per network x data
    x augmentation x training-set size x budget x variant, one line per group (mean over
    seeds, band min-max); None when ``curves`` is empty."""
    if curves.empty:
        return None
    panels = _panels(curves, list(PANEL_FIELDS))
    sized = {key[:3] for key, _ in panels if key[3] is not None}
    several_budgets = len({key[4] for key, _ in panels}) > 1
    figure, axes = plt.subplots(len(panels), 2, figsize=(11, 3.2 * len(panels) + 0.9), squeeze=False)
    for row, ((model, data, augment, size, budget, variant), panel) in enumerate(panels):
        title = _panel_title(model, data, augment, size, (model, data, augment) in sized,
                             budget if several_budgets else None, variant)
        for group in _group_sort(list(panel["group"].unique())):
            runs = panel[panel["group"] == group]
            _draw_band(axes[row, 0], runs, "test_error", group)
            _draw_band(axes[row, 1], runs, "train_loss", group)
        for column, (name, label) in enumerate([("test_error", "test error (%, log scale)"),
                                                ("train_loss", "train loss (cross-entropy, log scale)")]):
            values = panel[name].dropna()
            if len(values) and (values > 0).all() and values.max() > LOG_SCALE_MIN_RATIO * values.min():
                _log_axis(axes[row, column])
            else:
                label = label.replace(", log scale", "")
            _style_axis(axes[row, column], f"{title}: {name.replace('_', ' ')}", label)
            _epoch_axis(axes[row, column], panel["epoch"])
    figure.suptitle("Convergence of CNNs (z2) and G-CNNs (p4, p4m): line = mean over seeds, "
                    "band = min-max over seeds", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def plot_convergence(curves: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """``convergence.png`` and ``.pdf`` (see :func:`convergence_figure`); the written paths."""
    figure = convergence_figure(curves)
    return [] if figure is None else _save(figure, Path(out_dir) / "convergence", ("png", "pdf"))


def _epoch_axis(axis: plt.Axes, epochs: pd.Series) -> None:
    """Integer epoch ticks; a run of one epoch sits in the middle of 0.5 .. 1.5."""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) and epochs.min() == epochs.max():
        only = float(epochs.iloc[0])
        axis.set_xlim(only - 0.5, only + 0.5)
        axis.set_xticks([only])


def _style_axis(axis: plt.Axes, title: str, ylabel: str, xlabel: str = "epoch") -> None:
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    if axis.has_data():
        axis.legend(title="group (seeds)", fontsize=8, title_fontsize=8)


def _save(figure: plt.Figure, stem: Path, formats: tuple[str, ...]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        atomic_write(path, lambda tmp, fmt=fmt: figure.savefig(tmp, format=fmt, dpi=DPI))
        paths.append(path)
    plt.close(figure)
    return paths


def _size_positions(panel: pd.DataFrame) -> tuple[dict, dict]:
    """x position and tick label of every training-set size; the full set sits at
    its recorded size (``n_train``) or, if unknown, at twice the largest subset."""
    sizes = sorted({int(s) for s in panel["train_size"] if not _is_missing(s)})
    positions = {s: float(s) for s in sizes}
    labels = {s: str(s) for s in sizes}
    if panel["train_size"].map(_is_missing).any():
        known = pd.to_numeric(panel.loc[panel["train_size"].map(_is_missing), "n_train"], errors="coerce") \
            if "n_train" in panel else pd.Series(dtype=float)
        full = float(known.dropna().iloc[0]) if known.notna().any() else 2.0 * max(sizes or [1])
        positions[None] = full
        labels[None] = f"full\n({int(full)})" if known.notna().any() else "full"
    return positions, labels


def _families(runs: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """Data-efficiency panels: families with at least two training-set sizes."""
    return [(key, panel) for key, panel in _panels(runs, list(FAMILY_FIELDS))
            if len(set(panel["train_size"].map(lambda s: -1 if _is_missing(s) else s))) > 1]


def data_efficiency_figure(runs: pd.DataFrame, efficiency: pd.DataFrame | None = None) -> plt.Figure | None:
    """Final test error (%) against training-set size (log x), one panel per network x
    data x augmentation x budget x variant with at least two sizes, one line per group
    (mean over seeds, bars min-max); the z2 network's full-data mean error as a dashed
    line and, from ``efficiency`` (:func:`repro.report.efficiency.data_efficiency`), a
    star where each G-CNN reaches it. The y axis stays within 0-100 %. None without
    such a panel."""
    panels = _families(runs)
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for axis, (key, panel) in zip(axes[0], panels):
        positions, labels = _size_positions(panel)
        for group in _group_sort(list(panel["group"].unique())):
            _draw_size_curve(axis, panel[panel["group"] == group], group, positions)
        _draw_z2_level(axis, panel, _family_rows(efficiency, key))
        axis.set_xscale("log")
        ticks: dict[float, str] = {}
        for size, position in positions.items():
            ticks[position] = f"{ticks[position]} = full" if position in ticks else labels[size]
        axis.set_xticks(list(ticks), list(ticks.values()))
        axis.minorticks_off()
        model, data, augment, budget, variant = key
        _style_axis(axis, _panel_title(model, data, augment, None, False, budget, variant),
                    "final test error (%)", "training-set size (images, log scale)")
        bottom, top = axis.get_ylim()
        axis.set_ylim(max(0.0, bottom), min(100.0, top))
    figure.suptitle("Data efficiency: line = mean over seeds, bars = min-max over seeds;\n"
                    "star = training-set size at which a G-CNN matches z2 on the full set", fontsize=10)
    figure.tight_layout()
    return figure


def plot_data_efficiency(runs: pd.DataFrame, out_dir: str | os.PathLike,
                         efficiency: pd.DataFrame | None = None) -> list[Path]:
    """``data_efficiency.png`` and ``.pdf`` (see :func:`data_efficiency_figure`); the
    written paths (none when no panel has two sizes)."""
    figure = data_efficiency_figure(runs, efficiency)
    return [] if figure is None else _save(figure, Path(out_dir) / "data_efficiency", ("png", "pdf"))


def _family_rows(efficiency: pd.DataFrame | None, key: tuple) -> pd.DataFrame:
    if efficiency is None or efficiency.empty:
        return pd.DataFrame()
    match = [tuple(None if _is_missing(v) else v for v in row) == key
             for row in efficiency[list(FAMILY_FIELDS)].itertuples(index=False, name=None)]
    return efficiency[match]


def _draw_z2_level(axis: plt.Axes, panel: pd.DataFrame, rows: pd.DataFrame) -> None:
    """Dashed line at the z2 full-data mean error; a star at each G-CNN's crossing."""
    z2_full = panel[(panel["group"] == "z2") & panel["train_size"].map(_is_missing)]["final_test_error"]
    if z2_full.empty:
        return
    level = float(z2_full.mean())
    axis.axhline(level, color=group_color("z2"), linestyle="--", linewidth=1.0,
                 label=f"z2, full data ({level:.2f}%)")
    for row in rows.to_dict("records"):
        if _is_missing(row["size_at_z2_full_error"]):
            continue
        size, color = float(row["size_at_z2_full_error"]), group_color(row["group"])
        axis.plot([size], [level], marker="*", markersize=15, color=color, markeredgecolor="black",
                  linestyle="none", zorder=5)
        prefix = "≤ " if row["crossing"] == "at_smallest" else ""
        fraction = f"{prefix}{row['fraction_of_full']:.2f}x" if not _is_missing(row["fraction_of_full"]) \
            else f"{prefix}{size:.0f}"
        axis.annotate(fraction, (size, level), textcoords="offset points", xytext=(4, 6), color=color,
                      fontsize=8, fontweight="bold")


def _draw_size_curve(axis: plt.Axes, runs: pd.DataFrame, group: str, positions: dict) -> None:
    key = runs["train_size"].map(lambda s: -1 if _is_missing(s) else int(s))
    stats = runs.assign(size=key).groupby("size")["final_test_error"].agg(["mean", "min", "max", "count"])
    stats.index = [positions[None if size == -1 else size] for size in stats.index]
    stats = stats.sort_index(kind="stable")
    errors = [stats["mean"] - stats["min"], stats["max"] - stats["mean"]]
    seeds = int(stats["count"].max())
    axis.errorbar(stats.index, stats["mean"], yerr=errors, color=group_color(group),
                  marker=GROUP_MARKERS.get(group, "o"), capsize=3, linewidth=1.8,
                  label=f"{group} (n≤{seeds})" if stats["count"].nunique() > 1 else f"{group} (n={seeds})")


P4M_LABELS = {"e": "e", "r": "r", "r2": "r²", "r3": "r³", "m": "m", "mr": "mr", "mr2": "mr²", "mr3": "mr³"}


def robustness_figure(summary: pd.DataFrame) -> plt.Figure | None:
    """Test error (%) against the transformation of the test set, one row of panels per
    network x data x augmentation x training-set size x budget x variant, one column per
    kind (the 8 elements of p4m; rotations every 15 degrees when measured), one line per
    group (mean over seeds, band min-max). ``summary`` is
    :func:`repro.report.robustness.robustness_summary`; None when it is empty."""
    if summary.empty:
        return None
    kinds = [kind for kind in KINDS if kind in set(summary["kind"])]
    panels = _panels(summary, list(PANEL_FIELDS))
    figure, axes = plt.subplots(len(panels), len(kinds), figsize=(6.5 * len(kinds), 3.4 * len(panels) + 0.9),
                                squeeze=False)
    sized = {key[:3] for key, _ in panels if key[3] is not None}
    for row, (key, panel) in enumerate(panels):
        model, data, augment, size, budget, variant = key
        title = _panel_title(model, data, augment, size, (model, data, augment) in sized, budget, variant)
        for column, kind in enumerate(kinds):
            axis = axes[row, column]
            for group in _group_sort(list(panel["group"].unique())):
                _draw_robustness_line(axis, panel[(panel["group"] == group) & (panel["kind"] == kind)], group)
            _style_axis(axis, f"{title}: {KINDS[kind]}", "test error (%)", f"test set transformed by: {KINDS[kind]}")
            lines = panel[panel["kind"] == kind].drop_duplicates("order").sort_values("order")
            step = max(1, len(lines) // 12)
            axis.set_xticks(list(lines["order"])[::step],
                            [P4M_LABELS.get(t, t) if kind == "p4m" else t for t in lines["transform"]][::step])
            bottom, top = axis.get_ylim()
            axis.set_ylim(max(0.0, bottom), min(100.0, top))
    figure.suptitle("Robustness: test error of the final models on transformed test sets "
                    "(line = mean over seeds, band = min-max)", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def _draw_robustness_line(axis: plt.Axes, stats: pd.DataFrame, group: str) -> None:
    if stats.empty:
        return
    stats = stats.sort_values("order")
    color = group_color(group)
    axis.plot(stats["order"], stats["mean"], color=color, marker=GROUP_MARKERS.get(group, "o"), markersize=4,
              linewidth=1.8, label=f"{group} (n={int(stats['n'].max())})")
    if int(stats["n"].max()) > 1:
        axis.fill_between(stats["order"], stats["min"], stats["max"], color=color, alpha=0.2, linewidth=0)


def plot_robustness(summary: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """``robustness.png`` and ``.pdf`` (see :func:`robustness_figure`); the written paths."""
    figure = robustness_figure(summary)
    return [] if figure is None else _save(figure, Path(out_dir) / "robustness", ("png", "pdf"))
