"""Checkpoints that survive a crash, a kill or a corrupt file.

``checkpoint.pt`` holds everything needed to resume exactly: model, optimizer,
scheduler and grad-scaler states, the epoch and the metrics so far. Saving writes the
new file beside the old one, loads it back to verify it, then rotates: the previous
good checkpoint becomes ``checkpoint.prev.pt`` and the new one ``checkpoint.pt``, each
step an atomic rename. So a good checkpoint always exists, and :func:`load_checkpoint`
falls back to the previous one (with a one-line warning) when the latest is unreadable.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from repro.io import save_torch

from .config import ConfigError

__all__ = ["CHECKPOINT", "PREVIOUS", "save_checkpoint", "load_checkpoint"]

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
_NEW = "checkpoint.new.pt"


def _read(path: Path, device: torch.device | str) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(checkpoint, dict) or "epoch" not in checkpoint:
        raise ValueError("not a checkpoint of this trainer")
    return checkpoint


def _why(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:200]


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt``, keeping the previous one as
    ``checkpoint.prev.pt``; the new file is read back before it replaces anything."""
    run_dir = Path(run_dir)
    new = save_torch(run_dir / _NEW, state)
    _read(new, "cpu")  # verify: a file that does not load never replaces a good one
    latest = run_dir / CHECKPOINT
    if latest.exists():
        os.replace(latest, run_dir / PREVIOUS)
    os.replace(new, latest)
    return latest


def load_checkpoint(run_dir: str | Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (tensors on ``device``), or None
    when there is none. A corrupt latest checkpoint falls back to the previous one with a
    warning on stderr; with neither readable, :class:`ConfigError` names the file."""
    run_dir = Path(run_dir)
    candidates = [run_dir / name for name in (CHECKPOINT, PREVIOUS) if (run_dir / name).exists()]
    failures = []
    for path in candidates:
        try:
            checkpoint = _read(path, device)
        except Exception as error:  # truncated, empty, garbage: try the previous one
            failures.append((path, error))
            continue
        if failures:
            print(f"warning: {failures[0][0]} is unreadable ({_why(failures[0][1])}); resuming from "
                  f"{path.name} (epoch {checkpoint['epoch']})", file=sys.stderr, flush=True)
        return checkpoint
    if failures:
        path, error = failures[0]
        raise ConfigError(f"{path} is unreadable ({_why(error)}) and no earlier checkpoint is usable; "
                          f"delete {run_dir} to start the run again")
    return None
