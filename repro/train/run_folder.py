"""A run's folder: the files the trainer writes there (each atomically, by rank 0) and how they
are read back safely. ``config.json`` (the recorded config, written before the first epoch so that
the report lists a run that dies early), ``metrics.jsonl`` (a line per epoch), ``checkpoint.pt``
(+ ``checkpoint.prev.pt``) and, at the end, ``result.json`` (``status`` ``finished``, or ``diverged`` with
where). While a process trains there it holds ``train.lock`` (:func:`run_lock`)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from repro.io import save_torch, write_json

from .config import ConfigError
from .identity import identity_diff
from .stops import RunLocked

METRICS = "metrics.jsonl"
RESULT = "result.json"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
LOCK = "train.lock"

# The keys of result.json that readers rely on; FINISHED and DIVERGED are its statuses. Every record, finished
# (Trainer.result) or diverged (record_diverged), holds RESULT_COMMON_KEYS, written by Trainer.run_fields.
RESULT_RUN_FIELDS = ("model", "group", "augment", "data", "train_size", "seed", "epochs")
RESULT_COMMON_KEYS = (*RESULT_RUN_FIELDS, "identity", "config", "wall_time_s")
RESULT_REQUIRED_KEYS = (*RESULT_RUN_FIELDS, "status", "final_test_error", "config")
RESULT_OPTIONAL_KEYS = ("best_test_error", "best_epoch", "final_train_loss", "params", "macs", "equivariance_error",
                        "equivariance_group", "wall_time_s", "device", "git_commit", "n_train", "steps", "robustness")
# A line of metrics.jsonl; epochs without an evaluation (eval_every) lack test_loss and test_error.
METRIC_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "epoch_time_s", "images_per_s")
FINISHED, DIVERGED = "finished", "diverged"


def _read_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "epoch" not in checkpoint:
        raise ValueError("not a checkpoint of this trainer")
    return checkpoint


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt``, load it back, then rotate: the previous one becomes
    ``checkpoint.prev.pt``, so a good checkpoint survives a crash, a kill or a corrupt file."""
    new = save_torch(run_dir / "checkpoint.new.pt", state)
    _read_checkpoint(new)  # a file that does not load never replaces a good one
    if (run_dir / CHECKPOINT).exists():
        os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS)
    os.replace(new, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (on the CPU; an unreadable latest one falls back to
    the previous with a one-line warning), or None when there is none; :class:`ConfigError` when none is readable."""
    unreadable = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.exists():
            continue
        try:
            checkpoint = _read_checkpoint(path)
        except Exception as error:  # truncated, empty, garbage: try the previous one
            why = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            unreadable.append(f"{path} is unreadable ({why})")
            continue
        if unreadable:
            print(f"warning: {unreadable[0]}; resuming from {path.name} (epoch {checkpoint['epoch']})",
                  file=sys.stderr, flush=True)
        return checkpoint
    if unreadable:
        raise ConfigError(f"{unreadable[0]} and no earlier checkpoint is usable; delete {run_dir} to start the "
                          "run again")
    return None


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``run_dir/train.lock`` (``fcntl.flock``, exclusive) inside; it records ``host`` and ``pid``.
    :class:`RunLocked` (one line: folder, holder, what to do) when a live process holds it. The kernel
    releases a flock when its holder dies, so a lock left by a killed run never blocks. Where the file
    system has no working locks (``flock`` fails, e.g. NFS without lock support) a one-line warning
    says so and the run goes on unguarded. The file is removed on release."""
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLocked(f"run folder {str(path.parent)!r} is in use by {holder} (lock {LOCK}); wait for it "
                            "to end, or stop that process and rerun the same command to resume") from None
        except OSError as error:
            print(f"warning: file locks do not work in {path.parent} ({error.strerror}); nothing stops a second "
                  "launch of this run from training in the same folder", file=sys.stderr, flush=True)
            break
        try:  # a releasing holder may have removed the file we opened: lock the one at the path
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def record_diverged(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write ``result.json`` with ``status: "diverged"`` and ``record`` (``epoch``, ``step``, ``loss``,
    ``reason`` and :data:`RESULT_COMMON_KEYS`): the report lists the run as excluded, never in a mean."""
    write_json(Path(run_dir) / RESULT, {**record, "status": DIVERGED})


def check_same_identity(run_dir: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to continue a run whose identity differs, naming each differing key."""
    diff = identity_diff(saved, current)
    if diff:
        keys = ", ".join(f"{k}={old!r} there, {new!r} now" for k, (old, new) in diff.items())
        raise ConfigError(f"run folder {str(run_dir)!r} holds a different experiment ({keys}); "
                          "use another folder or delete that one")


# ----------------------------------------------------------------------------- the record, read back
class RunFileWarning(UserWarning):
    """A run file that exists but is unreadable or malformed; the reader goes on without it (or its bad lines).
    ``path`` names the file, ``problem`` says what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def load_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``result.json`` of ``run_dir`` as written (any status), or None: when it is absent, and (with a
    :class:`RunFileWarning`) when it is not a JSON object or is a finished result lacking
    :data:`RESULT_REQUIRED_KEYS` or its config mapping. The one reader of the file: the trainer then redoes
    the final evaluation from the last checkpoint, the report lists the run as excluded."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        problem = None if isinstance(result, dict) else f"corrupt {RESULT} (not a JSON object)"
    except ValueError as err:  # also UnicodeDecodeError
        result, problem = None, f"corrupt {RESULT} ({err})"
    if problem is None and result.get("status") == FINISHED:
        missing = [key for key in RESULT_REQUIRED_KEYS if key not in result]
        if missing or not isinstance(result["config"], dict):
            problem = f"{RESULT} lacks keys {missing}" if missing else f"{RESULT} has no config mapping"
    if problem:
        warnings.warn(RunFileWarning(path, problem), stacklevel=2)
        return None
    return result


def load_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` by epoch (an epoch written twice, by a resumed run: the last line wins);
    [] when absent. Lines that are not a JSON object with an integer ``epoch`` (a line cut short by a crash,
    say) are skipped with one :class:`RunFileWarning` naming them."""
    path = Path(run_dir) / METRICS
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    rows: dict[int, dict[str, Any]] = {}
    bad_lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.pop(row["epoch"], None)
            rows[row["epoch"]] = row
        else:
            bad_lines.append(number)
    if bad_lines:
        warnings.warn(RunFileWarning(path, f"skipped unparseable line(s) {bad_lines}"), stacklevel=2)
    return [rows[epoch] for epoch in sorted(rows)]
