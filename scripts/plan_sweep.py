"""Estimate a paper sweep's cost before starting it, and ask first when there is no GPU.

    python scripts/plan_sweep.py --data cifar10 --seeds 0,1,2 [--epochs 300] [--force]
    python scripts/plan_sweep.py --networks allcnnc --augments none --train-sizes 1000,5000,10000,full --equal-steps

Exit status 0: go on; 1: declined or refused (no GPU, no terminal, no FORCE=1); 2: bad arguments.

The estimate is honest arithmetic, not a benchmark of the real trainer:

    MACs of the sweep = sum over jobs of (3 x training images seen + epochs x test images) x MACs per image

with training images seen = epochs x the job's training images (or, with
--equal-steps, epochs x the full training set: every job gets the optimiser steps of
the full-data run; its test set is assumed evaluated as often as that run's). Training
counts forward + backward as 3 forward passes, evaluation one; MACs per image from
:func:`models.count_macs`; wall time = MACs / (measured float32 matrix-multiply
throughput of this machine x an assumed efficiency of convolution training relative
to a large matmul). Expect it to be off by a factor of two or three either way; it is
meant to tell hours from weeks.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcnn.validation import check_choice  # noqa: E402

# (train images, test images, classes, input shape) of the data sets the sweep can use.
DATASETS = {"cifar10": (50_000, 10_000, 10, (3, 32, 32)), "cifar100": (50_000, 10_000, 100, (3, 32, 32))}
# A CIFAR-format folder (data=cifar_folder) is estimated as the official set of its format.
FOLDER = "cifar_folder"
# The paper's CIFAR table: All-CNN-C for z2/p4/p4m, ResNet44 for z2/p4m.
PAPER_NETWORKS = {"allcnnc": ("z2", "p4", "p4m"), "resnet44": ("z2", "p4m")}
TRAIN_COST_FACTOR = 3  # forward + backward ~ 3 forward passes
ASSUMED_EFFICIENCY = 0.5  # conv training reaches about half of a large matmul's throughput (assumption)


def augments() -> list[str]:
    """The augmentations the configs offer: the YAML files under ``configs/augment/``."""
    from repro.train import config_groups
    return list(config_groups()["augment"])


@dataclass
class SweepPlan:
    """The sweep: ``networks`` maps arch -> groups; ``epochs`` maps arch -> epochs;
    ``train_sizes``: training-set sizes (None = the full set); ``equal_steps``: every
    size trains for the optimiser steps of the full-data run."""

    data: str = "cifar10"
    data_format: str = "cifar10"
    networks: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PAPER_NETWORKS))
    augments: tuple[str, ...] = ("none", "crop_flip")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: dict[str, int] = field(default_factory=dict)
    train_sizes: tuple[int | None, ...] = (None,)
    equal_steps: bool = False

    def __post_init__(self) -> None:
        check_choice("data", self.data, [*sorted(DATASETS), FOLDER])
        check_choice("format", self.data_format, sorted(DATASETS))
        known = augments()
        for augment in self.augments:
            check_choice("augment", augment, known)
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. 0,1,2")
        full = self.sizes[0]
        for size in self.train_sizes:
            if size is not None and not 0 < size <= full:
                raise ValueError(f"train size {size!r} is not valid; expected 1..{full} or full")
        for arch in self.networks:
            value = self.epochs.get(arch)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"epochs for {arch!r} is {value!r}; give a positive number "
                                 "(EPOCHS=N, or arch=N,... per network)")

    def jobs(self) -> list[tuple[str, str, str, int | None, int]]:
        """Every (arch, group, augment, train size, seed) the sweep trains."""
        return [(arch, group, augment, size, seed) for arch, groups in self.networks.items()
                for group in groups for augment in self.augments for size in self.train_sizes
                for seed in self.seeds]

    @property
    def dataset(self) -> str:
        """The official data set the sweep is estimated on (a folder's format)."""
        return self.data_format if self.data == FOLDER else self.data

    @property
    def sizes(self) -> tuple:
        """(train images, test images, classes, input shape) of the sweep's data set."""
        return DATASETS[self.dataset]

    def images_seen(self, arch: str, size: int | None) -> int:
        """Training images one job processes (all epochs)."""
        full = self.sizes[0]
        return self.epochs[arch] * (full if size is None or self.equal_steps else size)


def model_macs(arch: str, group: str, data: str) -> int:
    """MACs per image of ``arch``/``group`` at the data set's input size."""
    import models
    _, _, classes, shape = DATASETS[data]  # data: cifar10 or cifar100 (a folder's format)
    model = models.build_model(arch, group, num_classes=classes, in_channels=shape[0])
    return int(models.count_macs(model, input_shape=shape))


def sweep_macs(plan: SweepPlan, macs_of: Callable[[str, str, str], int] = model_macs) -> int:
    """Total multiply-accumulates of the sweep (see the module docstring)."""
    test = plan.sizes[1]
    per_image = {(arch, group): macs_of(arch, group, plan.dataset)
                 for arch, groups in plan.networks.items() for group in groups}
    return sum((TRAIN_COST_FACTOR * plan.images_seen(arch, size) + plan.epochs[arch] * test) * per_image[arch, group]
               for arch, group, _, size, _ in plan.jobs())


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


def _sizes_text(plan: SweepPlan) -> str:
    if plan.train_sizes == (None,):
        return ""
    sizes = "/".join("full" if s is None else str(s) for s in plan.train_sizes)
    return f"; train sizes {sizes}" + (" (equal optimiser steps)" if plan.equal_steps else "")


def estimate_text(plan: SweepPlan, total_macs: int, macs_per_s: float) -> str:
    """The human-readable estimate printed before the sweep."""
    seconds = total_macs / (macs_per_s * ASSUMED_EFFICIENCY)
    epochs = ", ".join(f"{arch} {n}" for arch, n in plan.epochs.items())
    networks = ", ".join(f"{arch}: {'/'.join(groups)}" for arch, groups in plan.networks.items())
    per_run = seconds / len(plan.jobs())
    return (f"Sweep: {len(plan.jobs())} training runs on {plan.data} ({networks}; "
            f"augment {'/'.join(plan.augments)}; seeds {','.join(map(str, plan.seeds))}; epochs {epochs}"
            f"{_sizes_text(plan)}).\n"
            f"Estimated work: {total_macs:.2e} multiply-accumulates "
            f"({TRAIN_COST_FACTOR} x training images seen + epochs x test images, x MACs per image).\n"
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


def recipe_epochs(arch: str) -> int | None:
    """``epochs`` of ``experiment=paper_<arch>`` as the trainer composes it, if that recipe exists."""
    from repro.train import compose_config, config_groups
    if f"paper_{arch}" not in config_groups()["experiment"]:
        return None
    return int(compose_config([f"experiment=paper_{arch}"]).epochs)


def _parse_epochs(text: str | None, archs: Sequence[str]) -> dict[str, int]:
    """``N`` for every network or ``arch=N,...``; a network not named gets its paper recipe's."""
    if text and "=" not in text:
        return {arch: int(text) for arch in archs}
    pairs = dict(item.split("=", 1) for item in text.split(",")) if text else {}
    return {arch: int(pairs[arch]) if arch in pairs else recipe_epochs(arch) for arch in archs}


def parse_train_sizes(text: str) -> tuple[int | None, ...]:
    """``1000,5000,full`` -> ``(1000, 5000, None)`` (``full`` or ``null`` = the whole set)."""
    sizes = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item in ("full", "null"):
            sizes.append(None)
        elif item.isdigit():
            sizes.append(int(item))
        else:
            raise ValueError(f"train size {item!r} is not valid; expected a positive integer or full")
    return tuple(sizes)


def _parse_networks(text: str) -> dict[str, tuple[str, ...]]:
    networks = {}
    for arch in (part.strip() for part in text.split(",") if part.strip()):
        if arch not in PAPER_NETWORKS:
            raise ValueError(f"network {arch!r} is not valid; expected one of {list(PAPER_NETWORKS)}")
        networks[arch] = PAPER_NETWORKS[arch]
    return networks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Estimate a paper sweep's cost; ask before running it without a GPU.")
    parser.add_argument("--data", default="cifar10", help=f"one of {[*sorted(DATASETS), FOLDER]}")
    parser.add_argument("--format", default="cifar10", dest="data_format",
                        help=f"layout of a {FOLDER} (one of {sorted(DATASETS)}); estimated as that official set")
    groups = "; ".join(f"{arch}: " + "/".join(names) for arch, names in PAPER_NETWORKS.items())
    parser.add_argument("--networks", default=",".join(PAPER_NETWORKS),
                        help=f"comma list of networks, each with the paper's groups ({groups})")
    parser.add_argument("--augments", default="none,crop_flip", help="comma list of the configs/augment/ choices")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    parser.add_argument("--epochs", default=None,
                        help="one number for all, or arch=N,...; default: the paper recipes' epochs")
    parser.add_argument("--train-sizes", default="full", help="comma list of training-set sizes, full = all")
    parser.add_argument("--equal-steps", action="store_true",
                        help="every size trains for the optimiser steps of the full-data run")
    parser.add_argument("--force", action="store_true", help="do not ask (also: environment FORCE=1)")
    return parser


def main(argv: Sequence[str] | None = None, ask: Callable[[str], str] = input) -> int:
    """CLI: print the estimate; exit 0 to go on, 1 to stop, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        networks = _parse_networks(args.networks)
        plan = SweepPlan(data=args.data, data_format=args.data_format, networks=networks,
                         augments=tuple(args.augments.split(",")), seeds=seeds,
                         epochs=_parse_epochs(args.epochs, list(networks)),
                         train_sizes=parse_train_sizes(args.train_sizes), equal_steps=args.equal_steps)
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
