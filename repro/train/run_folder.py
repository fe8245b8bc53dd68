"""A run's folder: the files the trainer writes there (each atomically, by rank 0) and how they
are read back safely. ``config.json`` (the recorded config, written before the first epoch so that
the report lists a run that dies early), ``metrics.jsonl`` (a line per epoch), ``checkpoint.pt``
(+ ``checkpoint.prev.pt``) and, at the end, ``result.json``."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from repro.io import save_torch

from .config import ConfigError
from .identity import identity_diff

METRICS = "metrics.jsonl"
RESULT = "result.json"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``result.json`` of a finished run, or None (also when it is corrupt: a warning says so,
    and the final evaluation is redone from the last checkpoint)."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError as error:  # also UnicodeDecodeError
        print(f"warning: {path} is corrupt ({type(error).__name__}); redoing the final evaluation "
              "from the last checkpoint", file=sys.stderr, flush=True)
        return None
    return result if isinstance(result, dict) and result.get("status") == "finished" else None


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


def check_same_identity(run_dir: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to continue a run whose identity differs, naming each differing key."""
    diff = identity_diff(saved, current)
    if diff:
        keys = ", ".join(f"{k}={old!r} there, {new!r} now" for k, (old, new) in diff.items())
        raise ConfigError(f"run folder {str(run_dir)!r} holds a different experiment ({keys}); "
                          "use another folder or delete that one")
