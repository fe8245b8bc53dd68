"""Find run directories (single runs and Hydra multirun folders, nested at any depth) and load them.

A run directory holds ``metrics.jsonl`` (one JSON object per finished epoch) and, once training
ended, ``result.json``; a job that died before its first epoch leaves only the ``config.json`` the
trainer writes at its start; the files are read through :mod:`repro.train.run_folder`. Every run lands
either in ``runs`` (finished, kept) or in ``excluded`` (unfinished, crashed, diverged, corrupt, or an
older duplicate), with the reason. The curves hold the evaluated epochs only.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from repro.train.identity import identity_hash, identity_items
from repro.train.run_folder import (CHECKPOINT, CONFIG, DIVERGED, FINISHED, METRIC_KEYS, METRICS, RESULT,
                                    RESULT_OPTIONAL_KEYS, RESULT_RUN_FIELDS, RunFileWarning, load_metrics,
                                    load_result)

from .recipe import label_cells
from .values import rank, records_frame

# Display fields of every run (excluded ones too); which runs are the same experiment is decided
# by their identity (repro.report.recipe), not by these.
RUN_FIELDS = RESULT_RUN_FIELDS
METRIC_COLUMNS = METRIC_KEYS
OPTIONAL_RESULT_KEYS = RESULT_OPTIONAL_KEYS
RUN_COLUMNS = ["path", "status", "reason", *RUN_FIELDS, "data_format", "final_test_error", *OPTIONAL_RESULT_KEYS,
               "identity", "items", "sweep_name", "logger_project", "mtime"]
EXCLUDED_COLUMNS = ["path", "status", "reason", *RUN_FIELDS]
CURVE_KEYS = ["path", "model", "group", "augment", "data", "data_label", "train_size", "epochs", "budget", "variant",
              "recipe", "seed"]


@dataclass
class RunCollection:
    """``runs``: one row per finished run kept (:data:`RUN_COLUMNS` plus the columns of
    :func:`~repro.report.recipe.label_cells`); ``curves``: one row per (kept run, epoch);
    ``excluded``: one row per run left out, with ``status`` and ``reason``; ``warnings``: about files."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    excluded: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every directory at or below ``paths`` holding a result, metrics, checkpoint or config file,
    sorted; ValueError for a path that does not exist."""
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise ValueError(f"path {str(raw)!r} does not exist; give run directories or sweep directories")
        for dirpath, dirnames, filenames in os.walk(root.parent if root.is_file() else root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if {RESULT, METRICS, CHECKPOINT, CONFIG} & set(filenames):
                found.add(Path(dirpath).resolve())
    return sorted(found)


def _name_of(value: Any) -> Any:
    """A config choice stored as a name or as a dict with a ``name``."""
    return value.get("name") if isinstance(value, dict) else value


def _read_run_files(run_dir: Path, messages: list[str]) -> tuple[pd.DataFrame, dict | None, str | None]:
    """``(metrics, result, problem)``: the run's per-epoch metrics, its result.json (None when absent or
    corrupt) and why it is unusable (None when fine or absent); each warning of the readers is kept in
    ``messages`` and raised again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        metrics = pd.DataFrame(load_metrics(run_dir), columns=list(METRIC_COLUMNS))
        result = load_result(run_dir)
    problem = None
    for warning in (record.message for record in caught if isinstance(record.message, RunFileWarning)):
        if warning.path.name == RESULT:
            problem, warning = warning.problem, RunFileWarning(warning.path, f"{warning.problem}; run excluded")
        _warn(messages, warning)
    return metrics, result, problem


def _warn(messages: list[str], warning: RunFileWarning) -> None:
    messages.append(str(warning))
    warnings.warn(warning, stacklevel=4)


def _read_planned_config(run_dir: Path) -> dict:
    """Display fields of a run without result.json, from the config the trainer wrote at its start."""
    try:
        cfg = json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError):  # missing or unreadable: the fields stay unknown
        return {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    return {**{key: cfg.get(key) for key in RUN_FIELDS}, "train_size": data.get("train_size")}


def _progress(metrics: pd.DataFrame, planned: Any) -> str:
    if not len(metrics):
        return "crashed or stopped before its first epoch ended (no finished epoch)"
    total = f" of {planned}" if isinstance(planned, int) else ""
    return f"reached epoch {int(metrics['epoch'].max())}{total}"


def _load_run(run_dir: Path, messages: list[str]) -> tuple[dict, pd.DataFrame]:
    """``(record, metrics)`` of one directory; ``record["status"]`` says where it goes."""
    metrics, result, problem = _read_run_files(run_dir, messages)
    fields = result if result is not None else _read_planned_config(run_dir)
    record: dict[str, Any] = {"path": str(run_dir), **{key: _name_of(fields.get(key)) for key in RUN_FIELDS}}
    if result is not None and result.get("status") == DIVERGED:
        record.update(status=DIVERGED, reason=f"diverged at epoch {result.get('epoch', '?')} step "
                                              f"{result.get('step', '?')} (non-finite training loss)")
        return record, metrics
    if result is None or result.get("status") != FINISHED:
        why = problem or (f"no {RESULT}" if result is None
                          else f"status {result.get('status')!r} in {RESULT}")
        record.update(status="corrupt" if problem else "unfinished",
                      reason=f"{why}; {_progress(metrics, record['epochs'])}")
        return record, metrics
    if not len(metrics):
        _warn(messages, RunFileWarning(run_dir / METRICS, "missing or empty; run kept in the table, "
                                                          "left out of the convergence plot"))
    config = result["config"]
    items = identity_items(config)
    record.update({key: result.get(key) for key in OPTIONAL_RESULT_KEYS})
    record.update(status=FINISHED, reason="", final_test_error=float(result["final_test_error"]),
                  items=items, identity=identity_hash(items),
                  data_format=items.get("data.format"), sweep_name=config.get("sweep_name"),
                  logger_project=(config.get("logger") or {}).get("project"),
                  mtime=(run_dir / RESULT).stat().st_mtime)
    return record, metrics


def _split_duplicates(finished: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the newest run (by result.json mtime) of each identity (seed included); the others are duplicates."""
    if finished.empty:
        return finished, finished
    ordered = finished.sort_values(["identity", "mtime", "path"], ascending=[True, False, True])
    is_dup = ordered.duplicated("identity")
    newest = ordered.groupby("identity")["path"].transform("first")[is_dup]
    duplicates = ordered[is_dup].assign(status="duplicate", reason="same identity " + ordered["identity"][is_dup]
                                        + " (config and seed) as the newer run " + newest)
    return ordered[~is_dup], duplicates


def collect_runs(paths: Iterable[str | os.PathLike]) -> RunCollection:
    """Load every run found under ``paths`` (see :func:`find_run_dirs`)."""
    messages: list[str] = []
    records, curves = [], []
    for run_dir in find_run_dirs(paths):
        record, metrics = _load_run(run_dir, messages)
        records.append(record)
        evaluated = metrics[metrics["test_error"].notna()]  # epochs without an evaluation have no test error
        if record["status"] == FINISHED and len(evaluated):
            curves.append(evaluated.assign(path=record["path"]))
    table = records_frame(records, RUN_COLUMNS, ("train_size", "seed", "epochs"))
    kept, duplicates = _split_duplicates(table[table["status"] == FINISHED])
    excluded = pd.concat([table[table["status"] != FINISHED], duplicates], ignore_index=True)
    kept = label_cells(kept.sort_values(["data", "model", "group", "augment", "seed", "path"],
                                        key=lambda column: column.map(rank)).reset_index(drop=True))
    if curves:
        curves = pd.concat(curves, ignore_index=True).merge(kept[CURVE_KEYS], on="path", how="inner")
    else:
        curves = pd.DataFrame(columns=[*METRIC_COLUMNS, *CURVE_KEYS])
    return RunCollection(runs=kept, curves=curves, excluded=excluded[EXCLUDED_COLUMNS].reset_index(drop=True),
                         warnings=messages)
