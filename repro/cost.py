"""The one cost model of training: how much arithmetic a run is, and how long that takes here.

A training image costs :data:`TRAIN_PASSES` forward passes (forward + backward), an evaluated image one;
a multiply-accumulate is :data:`FLOP_PER_MAC` floating-point operations. The sweep estimate
(:mod:`repro.sweeps`) and the bench's TFLOP/s (:mod:`repro.bench.training`) both count with these.
"""
from __future__ import annotations

import time

TRAIN_PASSES = 3  # forward + backward ~ 3 forward passes
FLOP_PER_MAC = 2  # a multiply and an add
FLOP_PER_MAC_TRAIN = FLOP_PER_MAC * TRAIN_PASSES  # FLOP per MAC of a training step
ASSUMED_EFFICIENCY = 0.5  # conv training reaches about half of a large matmul's throughput (assumption)
# How a duration is printed: (below this many seconds, unit in seconds, unit name, decimals).
DURATION_UNITS = ((60, 1, "s", 0), (3600, 60, "min", 0), (3 * 86400, 3600, "h", 1),
                  (2 * 365 * 86400, 86400, "days", 1), (float("inf"), 365 * 86400, "years", 1))


def run_macs(images_trained: int, images_tested: int, macs_per_image: int) -> int:
    """Multiply-accumulates of a run that trains on ``images_trained`` images (all epochs together)
    and evaluates ``images_tested``."""
    return (TRAIN_PASSES * images_trained + images_tested) * macs_per_image


def measure_matmul_throughput(size: int = 1024, seconds: float = 0.5) -> float:
    """Float32 matrix-multiply MACs per second on this machine's CPU."""
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    start, repeats = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        repeats += 1
    return repeats * size ** 3 / (time.perf_counter() - start)


def cpu_seconds(total_macs: float, macs_per_s: float) -> float:
    """Wall time of ``total_macs`` at ``macs_per_s`` matmul throughput x :data:`ASSUMED_EFFICIENCY`."""
    return total_macs / (macs_per_s * ASSUMED_EFFICIENCY)


def format_duration(seconds: float) -> str:
    """``20 s``, ``10 min``, ``2.0 h``, ``5.0 days``, ``3.0 years``: the unit that fits."""
    _, unit, name, decimals = next(row for row in DURATION_UNITS if seconds < row[0])
    return f"{seconds / unit:.{decimals}f} {name}"
