"""Log a built report to Weights & Biases: one run (``job_type="report"``) in the sweep's group gets
the tables as ``wandb.Table``, the PNG figures and the robustness means as summary numbers. Offline
by default, like the training runs (files under ``<out>/wandb/``; ``wandb sync`` uploads them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from repro.train.loggers import DEFAULT_PROJECT

from . import Report
from .render import size_text
from .values import is_missing



def _named(report: Report, column: str) -> list[str]:
    return sorted({v for v in report.collection.runs[column] if isinstance(v, str) and v})


def wandb_group(report: Report, group: str | None = None) -> str:
    """``group`` if given, else the runs' ``sweep_name`` when they all agree; ValueError otherwise."""
    if group:
        return group
    names = _named(report, "sweep_name")
    if len(names) != 1:
        found = f"the runs name {len(names)} sweeps ({', '.join(names)})" if names else "no run names its sweep"
        raise ValueError(f"{found}; give the wandb group with --wandb-group NAME")
    return names[0]


def wandb_project(report: Report) -> str:
    """The runs' ``logger.project`` when they all agree, else :data:`DEFAULT_PROJECT`."""
    names = _named(report, "logger_project")
    return names[0] if len(names) == 1 else DEFAULT_PROJECT


def _wandb_table(frame: pd.DataFrame) -> Any:
    """A ``wandb.Table``: numbers as float, missing as None, anything else as text."""
    import wandb

    def cell(value: Any) -> Any:
        if is_missing(value):
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return wandb.Table(columns=[str(c) for c in frame.columns],
                       data=[[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)])


def log_report(report: Report, *, group: str, project: str, mode: str = "offline") -> Path:
    """Log ``report`` to one wandb run in ``group`` (files under ``<report.out_dir>/wandb/``); returns
    the run's folder once every record is written (it ends this process's wandb session)."""
    import wandb
    run = wandb.init(project=project, group=group, job_type="report", name=f"report-{group}", mode=mode,
                     dir=str(report.out_dir), config={"runs": len(report.collection.runs),
                                                       "excluded": len(report.collection.excluded)})
    try:
        logged: dict[str, Any] = {"table": _wandb_table(report.summary)}
        if not report.efficiency.empty:
            logged["data_efficiency"] = _wandb_table(report.efficiency)
        if not report.robustness.empty:
            logged["robustness"] = _wandb_table(report.robustness)
        logged.update({f"figures/{path.stem}": wandb.Image(str(path))
                       for path in report.figures if path.suffix == ".png"})
        run.log(logged)
        numbers = {}  # robustness/<model>/<group>/<data>/<augment>/<size>/<budget>[/<variant>]/<kind>/<transform>
        for row in report.robustness.to_dict("records"):
            parts = [row["model"], row["group"], row["data_label"], row["augment"], size_text(row["train_size"]),
                     row["budget"], row["variant"] or None, row["kind"], row["transform"]]
            numbers["robustness/" + "/".join(str(p) for p in parts if p)] = float(row["mean"])
        run.summary.update(numbers)
        folder = Path(run.dir).parent
    finally:
        run.finish()
    wandb.teardown()  # wait until the service has written every record (offline) or uploaded them
    return folder
