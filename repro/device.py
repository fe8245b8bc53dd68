"""Where code runs, for the trainer, the benchmark and the GPU check: the device, its autocast,
and a description of the machine (what ``result.json`` and ``results/bench/*.json`` record)."""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import torch

from torch import nn

from gcnn.validation import check_choice, invalid

__all__ = ["AMP_DTYPES", "AUTO_FLAGS", "check_device_name", "resolve_device", "resolve_flag", "resolve_speed_flags",
           "autocast", "to_channels_last", "forward_in_layout", "cpu_model", "device_name", "device_slug",
           "git_commit", "describe_machine"]

AMP_DTYPES = ("bfloat16", "float16")
AUTO_FLAGS = ("auto", True, False)  # a flag that is "auto": on for CUDA only
REPO_ROOT = Path(__file__).resolve().parents[1]


def check_device_name(name: Any) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ValueError naming it otherwise."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise invalid("device", name, "one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    return name


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` (= ``cuda:<local_rank>``) or ``"cuda:N"``
    as a device; ValueError naming the value for anything else, and for CUDA on a machine without it."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise invalid("device", name, "'cpu' or 'auto': CUDA is not available on this machine")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def resolve_flag(value: Any, device: torch.device, name: str = "flag") -> bool:
    """A config's ``"auto"`` (on for CUDA only), ``True`` or ``False`` as a bool; ``name`` is the
    config key named in the error."""
    check_choice(name, value, AUTO_FLAGS)
    return device.type == "cuda" if value == "auto" else value


def resolve_speed_flags(compile: Any, channels_last: Any, device: torch.device) -> tuple[bool, bool]:
    """A config's ``compile`` and ``channels_last`` (each ``"auto"``, ``True`` or ``False``) as
    ``(compiled, channels_last)``. ``"auto"`` compiles on CUDA only, and uses the channels_last layout
    only where the model is compiled on CUDA: on an H100 channels_last sped the compiled paper networks
    up and slowed eager ones down (results/bench/nvidia-h100-80gb-hbm3-channels_last/)."""
    compiled = resolve_flag(compile, device, "compile")
    layout = resolve_flag(channels_last, device, "channels_last") and (channels_last is True or compiled)
    return compiled, layout


def autocast(device: torch.device, dtype: str | None) -> ContextManager:
    """``torch.autocast`` on ``device`` to ``dtype`` (``"bfloat16"`` or ``"float16"``); a context
    that does nothing for ``None`` or ``"none"``."""
    if dtype is None or dtype == "none":
        return nullcontext()
    check_choice("amp_dtype", dtype, ["none", *AMP_DTYPES])
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store every 4-D parameter (``nn.Conv2d`` weights) channels_last, in place; returns ``module``.
    The G-convs keep 5-D filters and expand them into a 4-D bank on every forward, so their layout
    follows the input batch's (:func:`forward_in_layout`), not this."""
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return module


def forward_in_layout(model: nn.Module, x: torch.Tensor, amp_dtype: str | None, channels_last: bool) -> torch.Tensor:
    """``model(x)`` under ``x``'s autocast, ``x`` in one memory layout for every batch (a rotated or
    flipped batch has other strides, which would make a compiled model recompile)."""
    with autocast(x.device, amp_dtype):
        return model(x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format))


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device) -> str:
    """The hardware's name: the GPU's (``NVIDIA H100 80GB HBM3``) or the CPU model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def device_slug(device: torch.device) -> str:
    """File-name stem of a device's results: ``cpu``, or the GPU's name in lower case with dashes
    (``nvidia-h100-80gb-hbm3``)."""
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def git_commit(root: str | Path = REPO_ROOT) -> str | None:
    """``HEAD``'s hash, suffixed ``-dirty`` if tracked files changed; None outside git."""
    command = ["git", "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"]  # no tag names
    try:
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def describe_machine(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """The machine and code a run or a benchmark ran on; ``device`` reads ``"cuda:0 (NVIDIA H100 ...)"``
    or ``"cpu (<cpu model>)"``."""
    name = device_name(device)
    info: dict[str, Any] = {
        "git_commit": git_commit(), "torch_version": torch.__version__, "device": f"{device} ({name})",
        "world_size": world_size, "device_name": name, "hostname": socket.gethostname(), "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(), "platform": platform.platform(),
        "cuda_version": torch.version.cuda,
    }
    if device.type == "cuda":
        info["cudnn_version"] = torch.backends.cudnn.version()
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    return info
