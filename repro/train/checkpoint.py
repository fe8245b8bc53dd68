"""Checkpoints that survive a crash, a kill or a corrupt file: saving writes a new file, loads it
back to verify it, then rotates (atomic renames) so the previous good one becomes
``checkpoint.prev.pt``; loading falls back to it, with a one-line warning, when the latest is unreadable."""
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


def _read(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "epoch" not in checkpoint:
        raise ValueError("not a checkpoint of this trainer")
    return checkpoint


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt``, keeping the previous one as ``checkpoint.prev.pt``."""
    new = save_torch(run_dir / "checkpoint.new.pt", state)
    _read(new)  # a file that does not load never replaces a good one
    if (run_dir / CHECKPOINT).exists():
        os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS)
    os.replace(new, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (on the CPU), or None when there is none;
    :class:`ConfigError` names the file when none is readable."""
    unreadable = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.exists():
            continue
        try:
            checkpoint = _read(path)
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
