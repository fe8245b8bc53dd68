"""Which machine a benchmark ran on: device, its name and slug, torch version, threads."""
from __future__ import annotations

import os
import platform
import re
from contextlib import nullcontext
from typing import ContextManager

import torch

__all__ = ["resolve_device", "device_name", "device_slug", "describe_machine", "autocast",
           "AMP_CHOICES"]

AMP_CHOICES = ("none", "bf16")


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available) as a device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"unknown device {name!r}; expected one of ['auto', 'cpu', 'cuda', 'cuda:N']")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device) -> str:
    """Human-readable name: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def device_slug(device: torch.device) -> str:
    """File-name stem of the results: ``cpu`` or ``cuda-<gpu name>`` (lower case, dashes)."""
    if device.type == "cpu":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def describe_machine(device: torch.device) -> dict:
    """Everything needed to tell two benchmark runs apart."""
    info = {
        "device": str(device),
        "device_name": device_name(device),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
    }
    if device.type == "cuda":
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def autocast(device: torch.device, amp: str) -> ContextManager:
    """``torch.autocast`` to bfloat16 when ``amp == "bf16"``, a no-op context when ``"none"``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"unknown amp mode {amp!r}; expected one of {list(AMP_CHOICES)}")
    if amp == "none":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
