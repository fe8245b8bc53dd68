"""Timing of zero-argument calls (CUDA work included) and of commands run to completion."""
from __future__ import annotations

import math
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping

import torch


def time_calls(fn: Callable[[], object], calls: int, device: torch.device | str) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``fn`` (queued CUDA work included)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / calls


def calibrate_inner(fn: Callable[[], object], min_sample_s: float, device: torch.device | str) -> int:
    """Smallest number of calls (1 to 10,000) whose total time reaches ``min_sample_s``."""
    if min_sample_s <= 0:
        return 1
    per_call = time_calls(fn, 1, device)
    if per_call < min_sample_s / 10:                   # re-measure tiny work over a few calls
        per_call = time_calls(fn, 10, device)
    return max(1, min(10_000, math.ceil(min_sample_s / max(per_call, 1e-9))))


def interleaved_timings(candidates: Mapping[str, Callable[[], object]], *, rounds: int,
                        warmup: int = 1, min_sample_s: float = 0.0,
                        device: torch.device | str = "cpu") -> dict[str, dict]:
    """Time every candidate once per round after ``warmup`` calls of each, in the order ``A, B, C``
    then ``C, B, A`` so that machine noise hits all alike; a sample is ``inner`` back-to-back calls
    (:func:`calibrate_inner`). Per candidate ``{"inner", "median_s", "min_s", "samples_s"}``, seconds per call."""
    if not candidates:
        raise ValueError("interleaved_timings needs at least one candidate, got none")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds!r}, warmup={warmup!r}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    inner = {name: calibrate_inner(fn, min_sample_s, device) for name, fn in candidates.items()}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        for name in (list(candidates) if r % 2 == 0 else reversed(list(candidates))):
            samples[name].append(time_calls(candidates[name], inner[name], device))
    return {name: {"inner": inner[name], "median_s": statistics.median(s), "min_s": min(s), "samples_s": s}
            for name, s in samples.items()}


def ratio(candidate: Mapping, baseline: Mapping) -> dict[str, float]:
    """``candidate / baseline`` timings as the ratio of medians, the median of per-round ratios
    and the ratio of minimums (the least disturbed samples, useful on a busy machine)."""
    per_round = [c / b for c, b in zip(candidate["samples_s"], baseline["samples_s"])]
    return {"ratio_of_medians": candidate["median_s"] / baseline["median_s"],
            "median_round_ratio": statistics.median(per_round),
            "ratio_of_minimums": candidate["min_s"] / baseline["min_s"]}


def time_command(command: list[str], cwd: str | Path = ".", timeout_s: float | None = None) -> dict:
    """Run ``command`` in ``cwd``: ``{"command", "wall_s", "returncode", "timed_out", "tail"}``
    (the last 5 output lines). After ``timeout_s`` it is killed: ``returncode`` None."""
    if not command:
        raise ValueError("time_command needs a non-empty command, got []")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
        returncode, output, timed_out = done.returncode, done.stdout + done.stderr, False
    except subprocess.TimeoutExpired as exc:             # its stdout is bytes even with text=True
        returncode, timed_out = None, True
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    tail = "\n".join(output.strip().splitlines()[-5:])
    return {"command": " ".join(command), "wall_s": time.perf_counter() - start, "returncode": returncode,
            "timed_out": timed_out, "tail": tail}
