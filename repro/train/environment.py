"""Where a run ran: git commit, torch version, device name."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["git_commit", "device_name", "environment"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: str | Path = REPO_ROOT) -> str | None:
    """``HEAD``'s hash, suffixed ``-dirty`` if tracked files changed; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def device_name(device: torch.device) -> str:
    """E.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64, 2 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device, world_size: int = 1) -> dict[str, object]:
    """The fields of ``result.json`` that describe the machine and code."""
    return {"git_commit": git_commit(), "torch_version": torch.__version__,
            "device": device_name(device), "world_size": world_size}
