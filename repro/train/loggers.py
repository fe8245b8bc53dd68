"""Experiment loggers beyond the run record (``metrics.jsonl`` + ``result.json``, always written).
Each class is the ``_target_`` of a YAML under ``configs/logger/``; ``wandb`` is imported only
when that logger is chosen."""
from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

from repro.io import write_text

DEFAULT_PROJECT = "gcnn-repro"  # the wandb project of runs and reports that name none

__all__ = ["Logger", "CsvLogger", "WandbLogger"]


class Logger:
    """Does nothing (``logger=none``). The run-time arguments, the same for every logger:
    ``run_dir``, ``config`` (the resolved config dict), ``run_name``, ``default_group`` (the sweep
    name in a multirun, else None) and ``default_tags``."""

    def __init__(self, run_dir: Path | None = None, config: dict[str, Any] | None = None,
                 run_name: str = "", default_group: str | None = None,
                 default_tags: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def log_epoch(self, history: list[dict[str, Any]]) -> None:
        """Called after each epoch; ``history[-1]`` is the epoch just finished."""

    def finish(self, result: dict[str, Any]) -> None:
        """Called once with the final ``result.json`` contents."""

    def close(self) -> None:
        """Release resources (also after a failure)."""


class CsvLogger(Logger):
    """Rewrites ``metrics.csv`` atomically after every epoch."""

    def log_epoch(self, history: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in history for k in row)),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.run_dir / "metrics.csv", buffer.getvalue())


class WandbLogger(Logger):
    """Resolved config, per-epoch metrics and final summary in one wandb run per run folder (offline
    by default: ``wandb sync`` uploads later); its id is kept in ``wandb_id.txt``, so a resumed run
    continues the same wandb run."""

    def __init__(self, run_dir: Path, config: dict[str, Any], run_name: str, default_group: str | None,
                 default_tags: list[str], *, mode: str = "offline", project: str = DEFAULT_PROJECT,
                 entity: str | None = None, group: str | None = None, tags: list[str] = ()) -> None:
        import wandb  # lazy: repro.train works without wandb installed

        super().__init__(run_dir)
        id_file = self.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        write_text(id_file, run_id + "\n")
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir),
                              id=run_id, resume="allow", name=run_name, group=group or default_group,
                              tags=list(dict.fromkeys([*default_tags, *tags])), config=config)

    def log_epoch(self, history: list[dict[str, Any]]) -> None:
        self.run.log(dict(history[-1]), step=history[-1]["epoch"])

    def finish(self, result: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None})

    def close(self) -> None:
        import wandb
        self.run.finish()
        wandb.teardown()  # wait until the service has written (offline) or sent every record
