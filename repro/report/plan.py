"""Estimate the cost of the paper's CIFAR sweep before starting it, and ask first
when there is no GPU.

The estimate is honest arithmetic, not a benchmark of the real trainer:

    MACs of the sweep = sum over jobs of epochs x (3 x train images + test images) x MACs per image

(training counts forward + backward as 3 forward passes, evaluation one), with
MACs per image from :func:`models.count_macs`; wall time = MACs / (measured
float32 matrix-multiply throughput of this machine x an assumed efficiency of
convolution training relative to a large matmul). Expect it to be off by a
factor of two or three either way; it is meant to tell hours from weeks.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["DATASETS", "PAPER_NETWORKS", "TRAIN_COST_FACTOR", "ASSUMED_EFFICIENCY", "SweepPlan",
           "sweep_macs", "measure_matmul_throughput", "estimate_text", "confirm", "main"]

# (train images, test images, classes, input shape) of the data sets the sweep can use.
DATASETS = {"cifar10": (50_000, 10_000, 10, (3, 32, 32)), "cifar100": (50_000, 10_000, 100, (3, 32, 32))}
# The paper's CIFAR table: All-CNN-C for z2/p4/p4m, ResNet44 for z2/p4m.
PAPER_NETWORKS = {"allcnnc": ("z2", "p4", "p4m"), "resnet44": ("z2", "p4m")}
AUGMENTS = ("none", "crop_flip", "rot_flip")
TRAIN_COST_FACTOR = 3  # forward + backward ~ 3 forward passes
ASSUMED_EFFICIENCY = 0.5  # conv training reaches about half of a large matmul's throughput (assumption)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class SweepPlan:
    """The sweep: ``networks`` maps arch -> groups; ``epochs`` maps arch -> epochs."""

    data: str = "cifar10"
    networks: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PAPER_NETWORKS))
    augments: tuple[str, ...] = ("none", "crop_flip")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data not in DATASETS:
            raise ValueError(f"data {self.data!r} is not a sweep data set; choose one of {sorted(DATASETS)}")
        for augment in self.augments:
            if augment not in AUGMENTS:
                raise ValueError(f"augment {augment!r} is unknown; choose from {list(AUGMENTS)}")
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. 0,1,2")
        for arch in self.networks:
            value = self.epochs.get(arch)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"epochs for {arch!r} is {value!r}; give a positive number "
                                 "(EPOCHS=N, or arch=N,... per network)")

    def jobs(self) -> list[tuple[str, str, str, int]]:
        """Every (arch, group, augment, seed) the sweep trains."""
        return [(arch, group, augment, seed) for arch, groups in self.networks.items()
                for group in groups for augment in self.augments for seed in self.seeds]


def model_macs(arch: str, group: str, data: str) -> int:
    """MACs per image of ``arch``/``group`` at the data set's input size."""
    import models
    _, _, classes, shape = DATASETS[data]
    model = models.build_model(arch, group, num_classes=classes, in_channels=shape[0])
    return int(models.count_macs(model, input_shape=shape))


def sweep_macs(plan: SweepPlan, macs_of: Callable[[str, str, str], int] = model_macs) -> int:
    """Total multiply-accumulates of the sweep (see the module docstring)."""
    train, test, _, _ = DATASETS[plan.data]
    per_image = {(arch, group): macs_of(arch, group, plan.data)
                 for arch, groups in plan.networks.items() for group in groups}
    return sum(plan.epochs[arch] * (TRAIN_COST_FACTOR * train + test) * per_image[arch, group]
               for arch, group, _, _ in plan.jobs())


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


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365 * 86400):.1f} years"


def estimate_text(plan: SweepPlan, total_macs: int, macs_per_s: float) -> str:
    """The human-readable estimate printed before the sweep."""
    effective = macs_per_s * ASSUMED_EFFICIENCY
    seconds = total_macs / effective
    epochs = ", ".join(f"{arch} {n}" for arch, n in plan.epochs.items())
    networks = ", ".join(f"{arch}: {'/'.join(groups)}" for arch, groups in plan.networks.items())
    per_run = seconds / len(plan.jobs())
    return (f"Sweep: {len(plan.jobs())} training runs on {plan.data} ({networks}; "
            f"augment {'/'.join(plan.augments)}; seeds {','.join(map(str, plan.seeds))}; epochs {epochs}).\n"
            f"Estimated work: {total_macs:.2e} multiply-accumulates "
            f"(epochs x ({TRAIN_COST_FACTOR} x train images + test images) x MACs per image).\n"
            f"Estimated wall time on this machine's CPU: about {_duration(seconds)} "
            f"({_duration(per_run)} per run on average) "
            f"(measured matmul throughput {macs_per_s / 1e9:.1f} GMAC/s x assumed efficiency "
            f"{ASSUMED_EFFICIENCY}; a rough estimate, easily off by 2-3x).")


def confirm(has_gpu: bool, force: bool, is_tty: bool, ask: Callable[[str], str] = input) -> bool:
    """Whether to go on: yes with a GPU or ``force``; otherwise ask on a terminal,
    refuse without one."""
    if has_gpu or force:
        return True
    if not is_tty:
        print("No GPU found and no terminal to ask: refusing to start the sweep. "
              "Run with FORCE=1 (make reproduce-table FORCE=1) to start it anyway.", file=sys.stderr)
        return False
    return ask("No GPU found. Proceed on the CPU? [y/N] ").strip().lower() in ("y", "yes")


def recipe_epochs(arch: str, config_dir: Path = CONFIG_DIR) -> int | None:
    """``epochs`` of ``configs/experiment/paper_<arch>.yaml`` if that recipe exists."""
    path = config_dir / "experiment" / f"paper_{arch}.yaml"
    if not path.exists():
        return None
    from omegaconf import OmegaConf
    value = OmegaConf.load(path).get("epochs")
    return int(value) if value is not None else None


def _parse_epochs(text: str | None, archs: Sequence[str]) -> dict[str, int]:
    if text:
        if "=" not in text:
            return {arch: int(text) for arch in archs}
        pairs = dict(item.split("=", 1) for item in text.split(","))
        return {arch: int(pairs[arch]) if arch in pairs else recipe_epochs(arch) for arch in archs}
    return {arch: recipe_epochs(arch) for arch in archs}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Estimate the paper sweep's cost; ask before running it without a GPU.")
    parser.add_argument("--data", default="cifar10", help=f"one of {sorted(DATASETS)}")
    parser.add_argument("--augments", default="none,crop_flip", help="comma list of none,crop_flip,rot_flip")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    parser.add_argument("--epochs", default=None,
                        help="one number for all, or arch=N,...; default: the paper recipes' epochs")
    parser.add_argument("--force", action="store_true", help="do not ask (also: environment FORCE=1)")
    return parser


def main(argv: Sequence[str] | None = None, ask: Callable[[str], str] = input) -> int:
    """CLI: print the estimate; exit 0 to go on, 1 to stop, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        epochs = _parse_epochs(args.epochs, list(PAPER_NETWORKS))
        plan = SweepPlan(data=args.data, augments=tuple(args.augments.split(",")), seeds=seeds,
                         epochs=epochs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch
    has_gpu = torch.cuda.is_available()
    force = args.force or os.environ.get("FORCE", "") not in ("", "0")
    if has_gpu:
        print(f"GPU found ({torch.cuda.get_device_name(0)}): starting {len(plan.jobs())} runs.")
        return 0
    print(estimate_text(plan, sweep_macs(plan), measure_matmul_throughput()))
    return 0 if confirm(has_gpu, force, sys.stdin.isatty(), ask) else 1


if __name__ == "__main__":
    sys.exit(main())
