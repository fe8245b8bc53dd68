"""Find run directories under any paths and load them into pandas tables.

A run directory holds ``metrics.jsonl`` (one JSON object per finished epoch)
and, once training ended, ``result.json``; single runs and Hydra multirun
folders nested at any depth are found alike. Every run lands in exactly one
place: ``runs`` (finished, kept for the averages) or ``excluded`` (unfinished,
crashed, corrupt or an older duplicate, with the reason). Problems with files
raise a :class:`RunFileWarning` naming the file and are kept in ``warnings``.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

__all__ = [
    "RESULT_FILE", "METRICS_FILE", "RUN_KEY", "RunFileWarning", "RunCollection",
    "find_run_dirs", "collect_runs",
]

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
# Two finished runs with the same values of these are duplicates.
RUN_KEY = ("model", "group", "augment", "data", "train_size", "seed")
REQUIRED_RESULT_KEYS = RUN_KEY + ("status", "epochs", "final_test_error")
METRIC_COLUMNS = ("epoch", "train_loss", "train_error", "test_loss", "test_error",
                  "lr", "epoch_time_s", "images_per_s")
OPTIONAL_RESULT_KEYS = ("best_test_error", "best_epoch", "final_train_loss", "params", "macs",
                        "equivariance_error", "equivariance_group", "wall_time_s", "device",
                        "git_commit", "n_train")


# Training images of the full training sets (before a validation split), used when a
# result.json predates the ``n_train`` field: digits_rot's fixed split (repro/data/digits.py)
# and CIFAR's 50k.
FULL_TRAIN_SIZES = {"digits_rot": 1000, "cifar10": 50_000, "cifar100": 50_000}


class RunFileWarning(UserWarning):
    """A run file is missing, unreadable or malformed; the report goes on without it."""


@dataclass
class RunCollection:
    """Everything found under the report's input paths.

    ``runs``: one row per finished run kept for the averages (columns: ``path``,
    the :data:`RUN_KEY` fields, ``epochs``, ``final_test_error`` and the optional
    result fields). ``curves``: one row per (kept run, epoch) with the metrics
    columns plus ``path`` and the run key. ``excluded``: one row per run left
    out, with ``status`` and ``reason``. ``warnings``: messages about files.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    excluded: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every directory at or below ``paths`` holding a result or metrics file,
    sorted and without repeats. A path that does not exist raises ValueError."""
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise ValueError(f"path {str(raw)!r} does not exist; give run directories or sweep directories")
        if root.is_file():
            root = root.parent
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if RESULT_FILE in filenames or METRICS_FILE in filenames:
                found.add(Path(dirpath).resolve())
    return sorted(found)


def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    warnings.warn(text, RunFileWarning, stacklevel=3)


def _name_of(value: Any) -> Any:
    """Config choices may be stored as a name or as a dict with a ``name``."""
    if isinstance(value, dict):
        return value.get("name")
    return value


def _read_metrics(run_dir: Path, messages: list[str]) -> pd.DataFrame:
    """The run's per-epoch metrics; unparseable lines are skipped with a warning."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    rows, bad_lines = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("no integer 'epoch'")
            rows.append(row)
        except ValueError:
            bad_lines.append(number)
    if bad_lines:
        _warn(messages, f"{path}: skipped unparseable line(s) {bad_lines}")
    frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def _read_result(run_dir: Path, messages: list[str]) -> tuple[dict | None, str | None]:
    """``(result, problem)``: the parsed result.json, or None and why not."""
    path = run_dir / RESULT_FILE
    if not path.exists():
        return None, None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        problem = f"corrupt {RESULT_FILE} ({err})"
        _warn(messages, f"{path}: {problem}; run excluded")
        return None, problem
    if not isinstance(result, dict):
        problem = f"corrupt {RESULT_FILE} (not a JSON object)"
        _warn(messages, f"{path}: {problem}; run excluded")
        return None, problem
    missing = [key for key in REQUIRED_RESULT_KEYS if key not in result]
    if missing and result.get("status") == "finished":
        problem = f"{RESULT_FILE} lacks keys {missing}"
        _warn(messages, f"{path}: {problem}; run excluded")
        return None, problem
    return result, None


def _read_planned_config(run_dir: Path) -> dict:
    """Key fields of a run without result.json, from Hydra's saved config if any."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    try:
        from omegaconf import OmegaConf
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001 - any unreadable config just leaves the fields unknown
        return {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    return {"model": _name_of(cfg.get("model")), "group": _name_of(cfg.get("group")),
            "augment": _name_of(cfg.get("augment")), "data": _name_of(cfg.get("data")),
            "train_size": data.get("train_size"), "seed": cfg.get("seed"), "epochs": cfg.get("epochs")}


def _key_fields(source: dict) -> dict:
    fields = {key: _name_of(source.get(key)) for key in RUN_KEY}
    fields["epochs"] = source.get("epochs")
    return fields


def _epochs_reached(metrics: pd.DataFrame) -> int:
    return int(metrics["epoch"].max()) if len(metrics) else 0


def _progress(metrics: pd.DataFrame, planned: Any) -> str:
    reached = _epochs_reached(metrics)
    total = f" of {planned}" if isinstance(planned, int) else ""
    return f"reached epoch {reached}{total}"


def _load_run(run_dir: Path, messages: list[str]) -> tuple[dict, pd.DataFrame]:
    """``(record, metrics)`` for one directory; ``record['status']`` says where it goes."""
    metrics = _read_metrics(run_dir, messages)
    result, problem = _read_result(run_dir, messages)
    record: dict[str, Any] = {"path": str(run_dir)}
    if result is None:
        record.update(_key_fields(_read_planned_config(run_dir)))
        if problem:
            record.update(status="corrupt", reason=f"{problem}; {_progress(metrics, record['epochs'])}")
        else:
            record.update(status="unfinished",
                          reason=f"no {RESULT_FILE}; {_progress(metrics, record['epochs'])}")
        return record, metrics
    record.update(_key_fields(result))
    status = result.get("status")
    if status != "finished":
        record.update(status="unfinished",
                      reason=f"status {status!r} in {RESULT_FILE}; {_progress(metrics, record['epochs'])}")
        return record, metrics
    if not len(metrics):
        _warn(messages, f"{run_dir / METRICS_FILE}: missing or empty; run kept in the table, "
                        "left out of the convergence plot")
    record.update({key: result.get(key) for key in OPTIONAL_RESULT_KEYS})
    record["n_train"] = _training_images(result)
    record.update(status="finished", reason="",
                  final_test_error=float(result["final_test_error"]),
                  mtime=(run_dir / RESULT_FILE).stat().st_mtime)
    return record, metrics


def _training_images(result: dict) -> int | None:
    """Number of training images: recorded, the subset size, or the full set's known size."""
    if isinstance(result.get("n_train"), int):
        return result["n_train"]
    if isinstance(result.get("train_size"), int):
        return result["train_size"]
    full = FULL_TRAIN_SIZES.get(_name_of(result.get("data")))
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    val_size = data.get("val_size") or 0
    return full - int(val_size) if full is not None else None


def _split_duplicates(finished: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the newest run (by result.json mtime) of each run key; list the others."""
    if finished.empty:
        return finished, finished.iloc[0:0]
    key = [*RUN_KEY, "epochs"]  # a 10-epoch smoke run is not a duplicate of the full run
    run_keys = ["|".join(map(repr, row)) for row in finished[key].itertuples(index=False, name=None)]
    ordered = finished.assign(_key=run_keys)
    ordered = ordered.sort_values(["_key", "mtime", "path"], ascending=[True, False, True])
    newest_path = ordered.groupby("_key")["path"].transform("first")
    is_dup = ordered["path"] != newest_path
    duplicates = ordered[is_dup].copy()
    duplicates["status"] = "duplicate"
    duplicates["reason"] = "same " + "/".join(key) + " as the newer run " + newest_path[is_dup]
    return ordered[~is_dup].drop(columns="_key"), duplicates.drop(columns="_key")


def collect_runs(paths: Iterable[str | os.PathLike]) -> RunCollection:
    """Load every run found under ``paths`` (see :func:`find_run_dirs`)."""
    messages: list[str] = []
    records, curves = [], []
    for run_dir in find_run_dirs(paths):
        record, metrics = _load_run(run_dir, messages)
        records.append(record)
        if record["status"] == "finished" and len(metrics):
            curves.append(metrics.assign(path=record["path"]))
    table = pd.DataFrame(records, columns=["path", "status", "reason", *RUN_KEY, "epochs",
                                           "final_test_error", *OPTIONAL_RESULT_KEYS, "mtime"])
    for column in ("train_size", "seed", "epochs"):
        table[column] = pd.Series([_int_or_none(v) for v in table[column]], index=table.index, dtype=object)
    finished = table[table["status"] == "finished"]
    kept, duplicates = _split_duplicates(finished)
    excluded = pd.concat([table[table["status"] != "finished"], duplicates], ignore_index=True)
    kept = kept.sort_values(["data", "model", "group", "augment", "seed", "path"],
                            key=_sort_key).reset_index(drop=True)
    curve_table = _join_curves(curves, kept)
    excluded = excluded[["path", "status", "reason", *RUN_KEY, "epochs"]].reset_index(drop=True)
    return RunCollection(runs=kept, curves=curve_table, excluded=excluded, warnings=messages)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int_or_none(value: Any) -> Any:
    """Whole numbers as int, missing as None, anything else unchanged."""
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sort_key(column: pd.Series) -> pd.Series:
    """Numbers first (numerically), then strings, then missing values."""
    def rank(value: Any) -> tuple:
        if _is_missing(value):
            return (2, 0.0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, float(value), "")
        return (1, 0.0, str(value))
    return column.map(rank)


def _join_curves(curves: list[pd.DataFrame], kept: pd.DataFrame) -> pd.DataFrame:
    key_columns = ["path", *RUN_KEY, "epochs"]
    if not curves:
        return pd.DataFrame(columns=[*METRIC_COLUMNS, *key_columns])
    joined = pd.concat(curves, ignore_index=True)
    return joined.merge(kept[key_columns], on="path", how="inner")
