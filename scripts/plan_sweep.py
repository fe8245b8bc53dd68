"""Estimate a paper sweep's cost before starting it, and ask first when there is no GPU.

    FORCE=1 python scripts/plan_sweep.py --data cifar10 --seeds 0,1,2 [--epochs 300]
    python scripts/plan_sweep.py --networks allcnnc --augments none --train-sizes 1000,5000,10000,full --equal-steps

Exit status 0: go on; 1: declined or refused (no GPU, no terminal, no FORCE=1); 2: bad arguments.
Work = sum over jobs of (3 x training images seen + epochs x test images) x MACs per image (with
--equal-steps every job sees epochs x the full set); wall time = work / (this CPU's matmul MAC/s x an
assumed 0.5 efficiency). Arithmetic, not a benchmark: it tells hours from weeks, off by 2-3x either way.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcnn.validation import check_choice  # noqa: E402
from repro.train.config import PAPER_TABLE  # noqa: E402

# (train images, test images, classes, input shape); a cifar_folder is estimated as the set of its format.
DATASETS = {"cifar10": (50_000, 10_000, 10, (3, 32, 32)), "cifar100": (50_000, 10_000, 100, (3, 32, 32))}
FOLDER = "cifar_folder"
# The paper's CIFAR table by network (All-CNN-C: z2/p4/p4m, ResNet44: z2/p4m).
PAPER_NETWORKS = {experiment.removeprefix("paper_"): groups for experiment, groups in PAPER_TABLE.items()}
TRAIN_COST_FACTOR = 3  # forward + backward ~ 3 forward passes
ASSUMED_EFFICIENCY = 0.5  # conv training reaches about half of a large matmul's throughput (assumption)
# How a duration is printed: (below this many seconds, unit in seconds, unit name, decimals).
DURATION_UNITS = ((60, 1, "s", 0), (3600, 60, "min", 0), (3 * 86400, 3600, "h", 1),
                  (2 * 365 * 86400, 86400, "days", 1), (float("inf"), 365 * 86400, "years", 1))


@dataclass
class SweepPlan:
    """``networks``: arch -> groups; ``epochs``: arch -> epochs; ``train_sizes``: None = the full set;
    ``equal_steps``: every size trains for the optimiser steps of the full-data run."""

    data: str = "cifar10"
    data_format: str = "cifar10"
    networks: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PAPER_NETWORKS))
    augments: tuple[str, ...] = ("none", "crop_flip")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: dict[str, int] = field(default_factory=dict)
    train_sizes: tuple[int | None, ...] = (None,)
    equal_steps: bool = False

    def __post_init__(self) -> None:
        from repro.train import config_groups
        check_choice("data", self.data, [*sorted(DATASETS), FOLDER])
        check_choice("format", self.data_format, sorted(DATASETS))
        known = config_groups()["augment"]
        for augment in self.augments:
            check_choice("augment", augment, known)
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. 0,1,2")
        full = DATASETS[self.dataset][0]
        for size in self.train_sizes:
            if size is not None and not 0 < size <= full:
                raise ValueError(f"train size {size!r} is not valid; expected 1..{full} or full")
        for arch in self.networks:
            value = self.epochs.get(arch)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"epochs for {arch!r} is {value!r}; give a positive number "
                                 "(EPOCHS=N, or arch=N,... per network)")

    @property
    def dataset(self) -> str:
        """The official data set the sweep is estimated on (a folder's format)."""
        return self.data_format if self.data == FOLDER else self.data

    def jobs(self) -> list[tuple[str, str, str, int | None, int]]:
        """Every (arch, group, augment, train size, seed) the sweep trains."""
        return [(arch, group, augment, size, seed) for arch, groups in self.networks.items()
                for group in groups for augment in self.augments for size in self.train_sizes
                for seed in self.seeds]


@functools.cache
def paper_recipe(arch: str) -> Any:
    """``experiment=paper_<arch>`` as the trainer composes it (ConfigError for an arch without one)."""
    from repro.train import compose_config
    return compose_config([f"experiment=paper_{arch}"])


def model_macs(arch: str, group: str, data: str) -> int:
    """MACs per image of ``arch``/``group`` as its paper recipe builds it (width, model overrides), at
    the input size of ``data`` (cifar10 or cifar100)."""
    import models
    _, _, classes, shape = DATASETS[data]
    model_cfg = paper_recipe(arch).model
    model = models.build_model(arch, group, num_classes=classes, in_channels=shape[0], width=model_cfg.width,
                               **dict(model_cfg.overrides))
    return int(models.count_macs(model, input_shape=shape))


def sweep_macs(plan: SweepPlan, macs_of: Callable[[str, str, str], int] = model_macs) -> int:
    """Total multiply-accumulates of the sweep (see the module docstring)."""
    full, test = DATASETS[plan.dataset][:2]
    per_image = {(arch, group): macs_of(arch, group, plan.dataset)
                 for arch, groups in plan.networks.items() for group in groups}
    total = 0
    for arch, group, _, size, _ in plan.jobs():
        seen = plan.epochs[arch] * (full if size is None or plan.equal_steps else size)
        total += (TRAIN_COST_FACTOR * seen + plan.epochs[arch] * test) * per_image[arch, group]
    return total


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
    _, unit, name, decimals = next(row for row in DURATION_UNITS if seconds < row[0])
    return f"{seconds / unit:.{decimals}f} {name}"


def estimate_text(plan: SweepPlan, total_macs: int, macs_per_s: float) -> str:
    """The human-readable estimate printed before the sweep."""
    seconds = total_macs / (macs_per_s * ASSUMED_EFFICIENCY)
    runs = len(plan.jobs())
    networks = ", ".join(f"{arch}: {'/'.join(groups)}" for arch, groups in plan.networks.items())
    epochs = ", ".join(f"{arch} {n}" for arch, n in plan.epochs.items())
    sizes = ""
    if plan.train_sizes != (None,):
        sizes = "; train sizes " + "/".join("full" if s is None else str(s) for s in plan.train_sizes)
        sizes += " (equal optimiser steps)" if plan.equal_steps else ""
    return (f"Sweep: {runs} training runs on {plan.data} ({networks}; augment {'/'.join(plan.augments)}; "
            f"seeds {','.join(map(str, plan.seeds))}; epochs {epochs}{sizes}).\n"
            f"Estimated work: {total_macs:.2e} multiply-accumulates "
            f"({TRAIN_COST_FACTOR} x training images seen + epochs x test images, x MACs per image).\n"
            f"Estimated wall time on this machine's CPU: about {_duration(seconds)} "
            f"({_duration(seconds / runs)} per run on average) "
            f"(measured matmul throughput {macs_per_s / 1e9:.1f} GMAC/s x assumed efficiency "
            f"{ASSUMED_EFFICIENCY}; a rough estimate, easily off by 2-3x).")


def confirm(force: bool, is_tty: bool, ask: Callable[[str], str] = input) -> bool:
    """Whether to go on without a GPU: yes with ``force`` (FORCE=1); else ask on a terminal, refuse without one."""
    if force:
        return True
    if not is_tty:
        print("No GPU found and no terminal to ask: refusing to start the sweep. "
              "Run with FORCE=1 (make reproduce-table FORCE=1) to start it anyway.", file=sys.stderr)
        return False
    return ask("No GPU found. Proceed on the CPU? [y/N] ").strip().lower() in ("y", "yes")


def recipe_epochs(arch: str) -> int:
    """``epochs`` of ``experiment=paper_<arch>`` as the trainer composes it."""
    return int(paper_recipe(arch).epochs)


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_train_sizes(text: str) -> tuple[int | None, ...]:
    """``1000,5000,full`` -> ``(1000, 5000, None)`` (``full`` or ``null`` = the whole set)."""
    for item in _items(text):
        if item not in ("full", "null") and not item.isdigit():
            raise ValueError(f"train size {item!r} is not valid; expected a positive integer or full")
    return tuple(None if item in ("full", "null") else int(item) for item in _items(text))


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    """The :class:`SweepPlan` of the command line; ValueError on a bad value."""
    for arch in _items(args.networks):
        if arch not in PAPER_NETWORKS:
            raise ValueError(f"network {arch!r} is not valid; expected one of {list(PAPER_NETWORKS)}")
    networks = {arch: PAPER_NETWORKS[arch] for arch in _items(args.networks)}
    if args.epochs and "=" not in args.epochs:  # one number for every network
        epochs = {arch: int(args.epochs) for arch in networks}
    else:  # arch=N,...; a network not named gets its paper recipe's epochs
        pairs = {}
        for item in _items(args.epochs or ""):
            arch, sep, value = item.partition("=")
            if not sep or arch not in networks:
                raise ValueError(f"epochs item {item!r} is not valid; expected one number for every network, "
                                 f"or arch=N for the networks {list(networks)}")
            pairs[arch] = value
        epochs = {arch: int(pairs[arch]) if arch in pairs else recipe_epochs(arch) for arch in networks}
    return SweepPlan(data=args.data, data_format=args.data_format, networks=networks,
                     augments=tuple(_items(args.augments)), seeds=tuple(int(s) for s in _items(args.seeds)),
                     epochs=epochs, train_sizes=parse_train_sizes(args.train_sizes), equal_steps=args.equal_steps)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the estimate; exit 0 to go on, 1 to stop, 2 on bad arguments."""
    parser = argparse.ArgumentParser(description="Estimate a paper sweep's cost; ask before running it without a GPU.")
    parser.add_argument("--data", default="cifar10", help=f"one of {[*sorted(DATASETS), FOLDER]}")
    parser.add_argument("--format", default="cifar10", dest="data_format",
                        help=f"layout of a {FOLDER} (one of {sorted(DATASETS)}); estimated as that official set")
    parser.add_argument("--networks", default=",".join(PAPER_NETWORKS),
                        help=f"comma list of {list(PAPER_NETWORKS)}, each with the paper's groups")
    parser.add_argument("--augments", default="none,crop_flip", help="comma list of the configs/augment/ choices")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    parser.add_argument("--epochs", help="one number for all, or arch=N,...; default: the paper recipes' epochs")
    parser.add_argument("--train-sizes", default="full", help="comma list of training-set sizes, full = all")
    parser.add_argument("--equal-steps", action="store_true",
                        help="every size trains for the optimiser steps of the full-data run")
    try:
        plan = plan_from_args(parser.parse_args(argv))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch
    if torch.cuda.is_available():
        print(f"GPU found ({torch.cuda.get_device_name(0)}): starting {len(plan.jobs())} runs.")
        return 0
    print(estimate_text(plan, sweep_macs(plan), measure_matmul_throughput()))
    return 0 if confirm(os.environ.get("FORCE", "") not in ("", "0"), sys.stdin.isatty()) else 1


if __name__ == "__main__":
    sys.exit(main())
