"""Figures of the report: convergence curves and data efficiency.

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

from .table import AUGMENT_ORDER, GROUP_ORDER, MODEL_ORDER, column_label, network_name  # noqa: E402

__all__ = ["GROUP_COLORS", "GROUP_MARKERS", "group_color", "plot_convergence", "plot_data_efficiency"]

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


def _panel_title(model: str, data: str, augment: str, train_size: Any, show_size: bool) -> str:
    return f"{network_name(model)} on {column_label(data, augment, train_size, show_size)}"


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


def plot_convergence(curves: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """``convergence.png`` and ``.pdf``: test error (%) and train loss against epoch,
    one row of panels per network x data x augmentation x training-set size, one
    line per group (mean over seeds, band min-max). Returns the written paths
    (none when ``curves`` is empty)."""
    if curves.empty:
        return []
    panels = _panels(curves, ["model", "data", "augment", "train_size", "epochs"])
    sized = {key[:3] for key, _ in panels if key[3] is not None}
    figure, axes = plt.subplots(len(panels), 2, figsize=(11, 3.2 * len(panels) + 0.9), squeeze=False)
    several_lengths = len({key[:4] for key, _ in panels}) < len(panels)
    for row, ((model, data, augment, size, epochs), panel) in enumerate(panels):
        title = _panel_title(model, data, augment, size, (model, data, augment) in sized)
        if several_lengths:
            title += f", {epochs} epochs"
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
    figure.suptitle("Convergence of CNNs (z2) and G-CNNs (p4, p4m): line = mean over seeds, "
                    "band = min-max over seeds", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return _save(figure, Path(out_dir) / "convergence", ("png", "pdf"))


def _style_axis(axis: plt.Axes, title: str, ylabel: str, xlabel: str = "epoch") -> None:
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    if xlabel == "epoch":
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def plot_data_efficiency(runs: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """``data_efficiency.png`` and ``.pdf``: final test error (%) against training-set
    size (log x), one line per group (mean over seeds, bars min-max), one panel per
    network x data x augmentation that has at least two sizes. Returns the written
    paths (none when no panel has two sizes)."""
    panels = [(key, panel) for key, panel in _panels(runs, ["model", "data", "augment"])
              if len(set(panel["train_size"].map(lambda s: -1 if _is_missing(s) else s))) > 1]
    if not panels:
        return []
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.4), squeeze=False)
    for axis, ((model, data, augment), panel) in zip(axes[0], panels):
        positions, labels = _size_positions(panel)
        for group in _group_sort(list(panel["group"].unique())):
            _draw_size_curve(axis, panel[panel["group"] == group], group, positions)
        axis.set_xscale("log")
        ticks: dict[float, str] = {}
        for size, position in positions.items():
            ticks[position] = f"{ticks[position]} = full" if position in ticks else labels[size]
        axis.set_xticks(list(ticks), list(ticks.values()))
        axis.minorticks_off()
        _style_axis(axis, f"{network_name(model)} on {column_label(data, augment)}",
                    "final test error (%)", "training-set size (images, log scale)")
    figure.suptitle("Data efficiency: line = mean over seeds, bars = min-max over seeds", fontsize=11)
    figure.tight_layout()
    return _save(figure, Path(out_dir) / "data_efficiency", ("png", "pdf"))


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
