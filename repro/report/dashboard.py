"""Log a built report to Weights & Biases, beside the sweep's training runs.

One wandb run (``job_type="report"``) in the sweep's group gets the table as a
``wandb.Table``, every PNG figure as a ``wandb.Image``, the data-efficiency and
robustness tables, and the robustness means as summary numbers. Like the training
runs it is offline by default (files under ``<out>/wandb/``; ``wandb sync`` uploads
them later). ``wandb`` is imported only here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .build import Report
from .values import is_missing

DEFAULT_PROJECT = "gcnn-repro"


def _agreed(report: Report, column: str) -> list[str]:
    """The distinct names the kept runs give in ``column``."""
    return sorted({v for v in report.collection.runs[column] if isinstance(v, str) and v})


def wandb_group(report: Report, group: str | None = None) -> str:
    """``group`` if given, else the runs' ``config.sweep_name`` when they all agree;
    ValueError naming the names found otherwise."""
    if group:
        return group
    names = _agreed(report, "sweep_name")
    if len(names) != 1:
        found = f"the runs name {len(names)} sweeps ({', '.join(names)})" if names else "no run names its sweep"
        raise ValueError(f"{found}; give the wandb group with --wandb-group NAME")
    return names[0]


def wandb_project(report: Report, project: str | None = None) -> str:
    """``project`` if given, else the runs' ``config.logger.project`` when they all agree,
    else :data:`DEFAULT_PROJECT`."""
    if project:
        return project
    names = _agreed(report, "logger_project")
    return names[0] if len(names) == 1 else DEFAULT_PROJECT


def _cell(value: Any) -> Any:
    """A table cell wandb can type: numbers as float, missing as None, anything else as text."""
    if is_missing(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return str(value)


def _table(frame: pd.DataFrame) -> Any:
    import wandb
    columns = [str(c) for c in frame.columns]
    return wandb.Table(columns=columns, data=[[_cell(v) for v in row]
                                              for row in frame.itertuples(index=False, name=None)])


def _robustness_numbers(robustness: pd.DataFrame) -> dict[str, float]:
    """``robustness/<model>/<group>/<data>/<augment>/<size>/<budget>[/<variant>]/<kind>/<transform>``: mean (%)."""
    numbers = {}
    for row in robustness.to_dict("records"):
        size = "full" if _cell(row["train_size"]) is None else str(row["train_size"])
        parts = [row["model"], row["group"], row["data_label"], row["augment"], size, row["budget"],
                 row["variant"] or None, row["kind"], row["transform"]]
        numbers["robustness/" + "/".join(str(p) for p in parts if p)] = float(row["mean"])
    return numbers


def log_report(report: Report, *, group: str, project: str, mode: str = "offline") -> Path:
    """Log ``report`` to one wandb run named ``report`` in ``group``; its files go under
    ``<report.out_dir>/wandb/``. Returns the wandb run's folder once every record is
    written (it ends this process's wandb session)."""
    import wandb
    run = wandb.init(project=project, group=group, job_type="report", name=f"report-{group}", mode=mode,
                     dir=str(report.out_dir), config={"runs": len(report.collection.runs),
                                                       "excluded": len(report.collection.excluded)})
    try:
        logged: dict[str, Any] = {"table": _table(report.summary)}
        if not report.efficiency.empty:
            logged["data_efficiency"] = _table(report.efficiency)
        if not report.robustness.empty:
            logged["robustness"] = _table(report.robustness)
        logged.update({f"figures/{path.stem}": wandb.Image(str(path))
                       for path in report.figures if path.suffix == ".png"})
        run.log(logged)
        run.summary.update(_robustness_numbers(report.robustness))
        folder = Path(run.dir).parent
    finally:
        run.finish()
    wandb.teardown()  # wait until the service has written every record (offline) or uploaded them
    return folder
