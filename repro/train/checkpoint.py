"""Checkpoints with everything needed to resume bit-for-bit: model, optimizer,
scheduler and grad-scaler states, the RNG states of torch/CUDA/numpy/python, the
epoch, and the metrics so far. Written with an atomic replace."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.io import save_torch

__all__ = ["CHECKPOINT", "rng_states", "restore_rng_states", "save_checkpoint", "load_checkpoint"]

CHECKPOINT = "checkpoint.pt"


def rng_states() -> dict[str, Any]:
    """The current RNG states of python, numpy, torch (CPU) and every CUDA device."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (plus the RNG states) to ``run_dir/checkpoint.pt``."""
    return save_torch(Path(run_dir) / CHECKPOINT, {**state, "rng": rng_states()})


def load_checkpoint(run_dir: str | Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint in ``run_dir`` with tensors on ``device``, or None if there is none
    (load on the CPU: ``load_state_dict`` moves states to the model's device)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location=device, weights_only=False)
