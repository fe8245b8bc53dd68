"""The named sweeps, each defined once: what it trains, where it writes, and what it costs.

:data:`SWEEPS` holds the paper table (``make reproduce-table``), the data-efficiency and rot-flip
sweeps and the CPU demo. ``scripts/sweep.py NAME`` (what the Makefile targets call) turns one into a
:class:`SweepPlan` with the user's values (seeds, epochs, data, ...), prints its cost estimate, asks
first when a GPU sweep finds no GPU, launches one Hydra multirun of ``scripts/train.py`` per network
and builds the report. The GPU check (:mod:`repro.bench.gpu`) projects :data:`PAPER_TABLE`'s time.

Adding a sweep is one :class:`Sweep` entry in :data:`SWEEPS`: its presets and their groups, as the
rotated-MNIST table (:data:`ROTMNIST_TABLE`) does. A network of a sweep is named by its preset without
``paper_`` (``allcnnc``, ``rotmnist_z2cnn``): two presets may train the same architecture.

Cost (:mod:`repro.cost`): work = sum over runs of (3 x training images seen + evaluated epochs x test images)
x MACs per image (with ``equal_steps`` every run sees epochs x the full set); wall time = work / (this
CPU's matmul MAC/s x an assumed 0.5 efficiency). Arithmetic, not a benchmark: it tells hours from
weeks, off by 2-3x either way.
"""
from __future__ import annotations

import functools
import math
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from gcnn.validation import check_choice
from repro.cost import TRAIN_PASSES, ASSUMED_EFFICIENCY, cpu_seconds, format_duration, run_macs
from repro.device import REPO_ROOT

# The paper's CIFAR table: experiment preset -> the groups it reports (All-CNN-C: z2/p4/p4m, ResNet44: z2/p4m).
PAPER_TABLE = {"paper_allcnnc": ("z2", "p4", "p4m"), "paper_resnet44": ("z2", "p4m")}
PAPER_AUGMENTS = ("none", "crop_flip")  # the table's columns C10 and C10+
# The paper's Table 1 (rotated MNIST): Z2CNN, P4CNN (and its p4m version, beyond the paper), P4CNN-RP.
ROTMNIST_TABLE = {"paper_rotmnist_z2cnn": ("z2",), "paper_rotmnist": ("p4", "p4m"), "paper_rotmnist_rp": ("p4",)}
FOLDER = "cifar_folder"
# Training and test images of the CIFAR layout (cifar10 and cifar100 alike). The data module reads the
# counts from the files it loads and holds no constant for them; a sweep must be sized before any download.
CIFAR_IMAGES = (50_000, 10_000)


@dataclass(frozen=True)
class Sweep:
    """One named sweep. ``experiments``: preset (``experiment=<name>``; None = configs/train.yaml's
    defaults) -> groups, one Hydra multirun each. ``data``: the data config (None: the recipe's own,
    not passed). ``augments`` / ``train_sizes``: swept values (None: the recipe's own, not swept).
    ``equal_steps``: every training-set size trains for the optimiser steps of one pass over the full set
    per epoch. ``epochs``: fixed for every run (None: each recipe's). ``needs_gpu``: ask before running on
    a CPU. ``sweep_dir`` / ``out``: the run folders and the report, formatted with ``{data}``,
    ``{augments}`` (joined by ``_``) and ``{augment_tag}`` (``""`` for :data:`PAPER_AUGMENTS`, else
    ``_`` + augments). ``record``: the committed report that ``out`` is compared with (None: none)."""

    name: str
    summary: str
    experiments: Mapping[str | None, tuple[str, ...]]
    data: str | None = "cifar10"
    seeds: tuple[int, ...] = (0, 1, 2)
    augments: tuple[str, ...] | None = PAPER_AUGMENTS
    train_sizes: tuple[int | None, ...] | None = None
    equal_steps: bool = False
    epochs: int | None = None
    launcher: str | None = "basic"
    needs_gpu: bool = True
    sweep_dir: str = "multirun/paper_{data}_{augments}"
    out: str = "results/{data}{augment_tag}"
    record: str | None = None


SWEEPS = {sweep.name: sweep for sweep in (
    Sweep("table", "the paper's CIFAR table (GPU)", PAPER_TABLE),
    Sweep("rot-flip", "the table with 90-degree rotation + flip augmentation, which hurts on CIFAR (GPU)",
          PAPER_TABLE, augments=("none", "rot_flip")),
    Sweep("data-efficiency", "All-CNN-C z2/p4/p4m at 1k/5k/10k/50k CIFAR images, equal optimiser steps (GPU)",
          {"paper_allcnnc": PAPER_TABLE["paper_allcnnc"]}, augments=None, train_sizes=(1000, 5000, 10000, None),
          equal_steps=True, sweep_dir="multirun/data_efficiency_{data}", out="results/data_efficiency_{data}"),
    # Every demo run gets the same optimiser-step budget: 20 epochs of one pass over all 1000 digits (8 steps).
    Sweep("demo", "CPU demo: z2/p4/p4m x training-set sizes on rotated digits (minutes)",
          {None: ("z2", "p4", "p4m")}, data=None, seeds=(0, 1), augments=None, train_sizes=(100, 300, None),
          equal_steps=True, epochs=20, launcher=None, needs_gpu=False, sweep_dir="multirun/demo",
          out="results/latest/demo", record="results/demo"),
    # Table 1 on MNIST-rot: five repeats as the reference code; a CPU runs it in hours (projected in the README).
    Sweep("rotmnist", "the paper's Table 1 on MNIST-rot: Z2CNN, P4CNN (+ p4m), P4CNN-RP (CPU: hours)",
          ROTMNIST_TABLE, data=None, seeds=(0, 1, 2, 3, 4), augments=None, needs_gpu=False,
          sweep_dir="multirun/rotmnist", out="results/rotmnist"),
)}


def get_sweep(name: str) -> Sweep:
    """The :class:`Sweep` called ``name``; ValueError naming the valid names."""
    check_choice("sweep", name, list(SWEEPS))
    return SWEEPS[name]


@functools.cache
def recipe(experiment: str | None) -> Any:
    """``experiment=<experiment>`` (None: no preset) as the trainer composes it."""
    from repro.train import compose_config
    return compose_config([f"experiment={experiment}"] if experiment else [])


def paper_recipe(arch: str) -> Any:
    """``experiment=paper_<arch>`` as the trainer composes it (ConfigError for an arch without one)."""
    return recipe(f"paper_{arch}")


def recipe_epochs(arch: str) -> int:
    """``epochs`` of ``experiment=paper_<arch>`` as the trainer composes it."""
    return int(paper_recipe(arch).epochs)


class DataSize(NamedTuple):
    """What a sweep estimate needs of a data set: image counts, classes and input shape ``(C, H, W)``."""

    train: int
    test: int
    classes: int
    shape: tuple[int, int, int]


@functools.cache
def data_size(dataset: str, image_size: int | None = None) -> DataSize:
    """:class:`DataSize` of an official data set (``cifar10``, ``cifar100``: 32x32 whatever ``image_size``;
    ``mnist_rot``) or of ``digits_rot`` at ``image_size``."""
    if dataset == "mnist_rot":
        from repro.data import mnist_rot
        rows = mnist_rot.OFFICIAL_ROWS
        side = mnist_rot.IMAGE_SIDE
        return DataSize(rows[mnist_rot.TRAIN_FILE], rows[mnist_rot.TEST_FILE], mnist_rot.NUM_CLASSES, (1, side, side))
    if dataset == "digits_rot":
        from repro.data.digits import load_digits_rot
        train_x, _, test_x, _, classes = load_digits_rot(int(image_size))
        return DataSize(len(train_x), len(test_x), len(classes), tuple(train_x.shape[1:]))
    from repro.data.cifar_format import cifar_layout
    return DataSize(*CIFAR_IMAGES, cifar_layout(dataset).num_classes, (3, 32, 32))


@dataclass
class SweepPlan:
    """A sweep with the user's values, validated. ``networks``: arch -> groups; ``experiments``: arch ->
    preset (None: no preset); ``epochs``: arch -> epochs; ``epochs_passed``: the archs whose epochs the
    command sets; ``train_sizes``: None = the full set; ``equal_steps``: every size trains for the optimiser
    steps of the full-data run; ``augments``: the swept ones (``sweep_augments``) or the recipe's."""

    data: str = "cifar10"
    data_format: str = "cifar10"
    networks: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {e.removeprefix("paper_"): g for e, g in PAPER_TABLE.items()})
    augments: tuple[str, ...] = PAPER_AUGMENTS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: dict[str, int] = field(default_factory=dict)
    train_sizes: tuple[int | None, ...] = (None,)
    equal_steps: bool = False
    experiments: dict[str, str | None] = field(default_factory=dict)
    sweep_augments: bool = True
    pass_data: bool = True
    epochs_passed: tuple[str, ...] = ()
    steps_per_epoch: int | None = None
    launcher: str | None = "basic"
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from repro.data import DATASET_NAMES
        from repro.data.cifar_format import CIFAR_FORMATS
        from repro.train import config_groups
        self.experiments = {arch: self.experiments.get(arch, f"paper_{arch}") for arch in self.networks}
        check_choice("data", self.data, list(DATASET_NAMES))
        check_choice("format", self.data_format, CIFAR_FORMATS)
        known = config_groups()["augment"]
        for augment in self.augments:
            check_choice("augment", augment, known)
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. 0,1,2")
        full = self.size.train
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

    @property
    def size(self) -> DataSize:
        """Image counts, classes and input shape of :attr:`dataset` (digits at the first recipe's image size)."""
        return data_size(self.dataset, recipe(next(iter(self.experiments.values()), None)).data.get("image_size"))

    def jobs(self) -> list[tuple[str, str, str, int | None, int]]:
        """Every (arch, group, augment, train size, seed) the sweep trains."""
        return [(arch, group, augment, size, seed) for arch, groups in self.networks.items()
                for group in groups for augment in self.augments for size in self.train_sizes
                for seed in self.seeds]


def model_macs(arch: str, group: str, data: str, cfg: Any = None) -> int:
    """MACs per image of network ``arch``/``group`` as its recipe ``cfg`` (default: ``paper_<arch>``) builds
    its model (width, model overrides), at the input size of ``data`` (cifar10, cifar100, mnist_rot or digits_rot)."""
    import models
    cfg = paper_recipe(arch) if cfg is None else cfg
    size = data_size(data, cfg.data.get("image_size"))
    model = models.build_model(cfg.model.name, group, num_classes=size.classes, in_channels=size.shape[0],
                               width=cfg.model.width, **dict(cfg.model.overrides))
    return int(models.count_macs(model, input_shape=size.shape))


def sweep_macs(plan: SweepPlan, macs_of: Callable[[str, str, str], int] | None = None) -> int:
    """Total multiply-accumulates of the sweep (see the module docstring)."""
    if macs_of is None:
        def macs_of(arch: str, group: str, data: str) -> int:
            return model_macs(arch, group, data, recipe(plan.experiments[arch]))
    full, test = plan.size.train, plan.size.test
    per_image = {(arch, group): macs_of(arch, group, plan.dataset)
                 for arch, groups in plan.networks.items() for group in groups}
    total = 0
    for arch, group, _, size, _ in plan.jobs():
        epochs = plan.epochs[arch]
        seen = epochs * (full if size is None or plan.equal_steps else size)
        evaluated = math.ceil(epochs / int(recipe(plan.experiments[arch]).eval_every))  # and always the last
        total += run_macs(seen, evaluated * test, per_image[arch, group])
    return total


def estimate_text(plan: SweepPlan, total_macs: int, macs_per_s: float) -> str:
    """The human-readable estimate printed before the sweep."""
    seconds = cpu_seconds(total_macs, macs_per_s)
    runs = len(plan.jobs())
    every_epoch = all(int(recipe(e).eval_every) == 1 for e in plan.experiments.values())
    tested = "epochs" if every_epoch else "evaluated epochs"
    networks = ", ".join(f"{arch}: {'/'.join(groups)}" for arch, groups in plan.networks.items())
    epochs = ", ".join(f"{arch} {n}" for arch, n in plan.epochs.items())
    sizes = ""
    if plan.train_sizes != (None,):
        sizes = "; train sizes " + "/".join("full" if s is None else str(s) for s in plan.train_sizes)
        sizes += " (equal optimiser steps)" if plan.equal_steps else ""
    return (f"Sweep: {runs} training runs on {plan.data} ({networks}; augment {'/'.join(plan.augments)}; "
            f"seeds {','.join(map(str, plan.seeds))}; epochs {epochs}{sizes}).\n"
            f"Estimated work: {total_macs:.2e} multiply-accumulates "
            f"({TRAIN_PASSES} x training images seen + {tested} x test images, x MACs per image).\n"
            f"Estimated wall time on this machine's CPU: about {format_duration(seconds)} "
            f"({format_duration(seconds / runs)} per run on average) "
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


# ----------------------------------------------------------------------------- the user's values
def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_train_sizes(text: str) -> tuple[int | None, ...]:
    """``1000,5000,full`` -> ``(1000, 5000, None)`` (``full`` or ``null`` = the whole set)."""
    for item in _items(text):
        if item not in ("full", "null") and not item.isdigit():
            raise ValueError(f"train size {item!r} is not valid; expected a positive integer or full")
    return tuple(None if item in ("full", "null") else int(item) for item in _items(text))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> ``(0, 1, 2)``."""
    for item in _items(text):
        if not item.isdigit():
            raise ValueError(f"seed {item!r} is not valid; expected a comma list of non-negative integers")
    return tuple(int(item) for item in _items(text))


def parse_epochs(text: str | None, networks: Sequence[str]) -> dict[str, int]:
    """``"3"`` -> every network 3; ``"allcnnc=3,..."`` -> the networks named; ``None`` -> none."""
    if not text:
        return {}
    if "=" not in text:  # one number for every network
        return {arch: int(text) for arch in networks}
    pairs = {}
    for item in _items(text):
        arch, sep, value = item.partition("=")
        if not sep or arch not in networks:
            raise ValueError(f"epochs item {item!r} is not valid; expected one number for every network, "
                             f"or arch=N for the networks {list(networks)}")
        pairs[arch] = int(value)
    return pairs


@dataclass
class UserValues:
    """The Makefile's variables (strings as typed; None/empty = the sweep's own value)."""

    data: str | None = None
    data_format: str | None = None
    networks: str | None = None
    seeds: str | None = None
    epochs: str | None = None
    augments: str | None = None
    train_sizes: str | None = None
    steps_per_epoch: str | None = None
    launcher: str | None = None
    overrides: tuple[str, ...] = ()


def network_name(experiment: str | None) -> str:
    """A sweep's name for the network a preset trains: the preset without ``paper_`` (no preset: its model)."""
    return experiment.removeprefix("paper_") if experiment else str(recipe(None).model.name)


def make_plan(sweep: Sweep, values: UserValues = UserValues()) -> SweepPlan:
    """The :class:`SweepPlan` of ``sweep`` with the user's ``values``; ValueError on a bad value."""
    by_arch = {network_name(experiment): (experiment, groups) for experiment, groups in sweep.experiments.items()}
    archs = _items(values.networks) if values.networks else list(by_arch)
    for arch in archs:
        check_choice("network", arch, list(by_arch))
    given = parse_epochs(values.epochs, archs)
    fixed = {arch: sweep.epochs for arch in archs} if sweep.epochs is not None else {}
    epochs = {**fixed, **given}
    first = recipe(by_arch[archs[0]][0]) if archs else recipe(None)
    augments = _items(values.augments) if values.augments else sweep.augments
    data = values.data or sweep.data or str(first.data.name)
    sizes = parse_train_sizes(values.train_sizes) if values.train_sizes else (sweep.train_sizes or (None,))
    plan = SweepPlan(
        data=data, data_format=values.data_format or "cifar10", networks={a: by_arch[a][1] for a in archs},
        experiments={arch: by_arch[arch][0] for arch in archs},
        augments=tuple(augments) if augments else (str(first.augment.name),), sweep_augments=augments is not None,
        pass_data=sweep.data is not None or values.data is not None,
        seeds=parse_seeds(values.seeds) if values.seeds else sweep.seeds,
        epochs={arch: epochs[arch] if arch in epochs else int(recipe(by_arch[arch][0]).epochs) for arch in archs},
        epochs_passed=tuple(epochs), train_sizes=sizes, equal_steps=sweep.equal_steps,
        launcher=values.launcher or sweep.launcher, overrides=tuple(values.overrides))
    if sweep.equal_steps:
        batch = int(first.batch_size)
        steps = int(values.steps_per_epoch) if values.steps_per_epoch else math.ceil(plan.size.train / batch)
        plan = replace(plan, steps_per_epoch=steps)
    return plan


# ----------------------------------------------------------------------------- launching
def _csv(values: Sequence[Any]) -> str:
    return ",".join("null" if value is None else str(value) for value in values)


def folders(sweep: Sweep, plan: SweepPlan) -> dict[str, str]:
    """``{"sweep_dir": ..., "out": ...}`` of ``sweep`` for ``plan``'s data and augmentations."""
    augments = "_".join(plan.augments)
    tag = "" if plan.augments == PAPER_AUGMENTS else f"_{augments}"
    fill = {"data": plan.data, "augments": augments, "augment_tag": tag}
    return {"sweep_dir": sweep.sweep_dir.format(**fill), "out": sweep.out.format(**fill)}


def train_commands(plan: SweepPlan, sweep_dir: str) -> list[list[str]]:
    """The ``scripts/train.py -m`` overrides of each network's multirun (a subfolder per network when
    there are several)."""
    commands = []
    for arch, groups in plan.networks.items():
        experiment = plan.experiments[arch]
        command = [f"experiment={experiment}"] if experiment else []
        command.append(f"group={_csv(groups)}")
        if plan.sweep_augments:
            command.append(f"augment={_csv(plan.augments)}")
        if plan.train_sizes != (None,):
            command.append(f"data.train_size={_csv(plan.train_sizes)}")
        if plan.steps_per_epoch is not None:
            command.append(f"steps_per_epoch={plan.steps_per_epoch}")
        command.append(f"seed={_csv(plan.seeds)}")
        if arch in plan.epochs_passed:
            command.append(f"epochs={plan.epochs[arch]}")
        if plan.launcher:
            command.append(f"hydra/launcher={plan.launcher}")
        command.append(f"hydra.sweep.dir={sweep_dir}/{arch}" if len(plan.networks) > 1 else
                       f"hydra.sweep.dir={sweep_dir}")
        if plan.pass_data:
            command += [f"data={plan.data}"] + ([f"data.format={plan.data_format}"] if plan.data == FOLDER else [])
        commands.append([*command, *plan.overrides])
    return commands


@dataclass
class Launch:
    """How :func:`run_sweep` runs one sweep."""

    sweep: Sweep
    plan: SweepPlan
    sweep_dir: str
    out: str
    report_args: tuple[str, ...] = ()
    compare_to: str | None = None

    def commands(self) -> list[list[str]]:
        """Every command, in order: one ``scripts/train.py -m`` per network, then ``scripts/report.py``."""
        python, scripts = sys.executable, REPO_ROOT / "scripts"
        train = [[python, str(scripts / "train.py"), "-m", *overrides]
                 for overrides in train_commands(self.plan, self.sweep_dir)]
        compare = ["--compare-to", self.compare_to] if self.compare_to else []
        return [*train, [python, str(scripts / "report.py"), self.sweep_dir, "--out", self.out, *compare,
                         *self.report_args]]


def make_launch(name: str, values: UserValues = UserValues(), sweep_dir: str | None = None, out: str | None = None,
                record: bool = False, report_args: Sequence[str] = ()) -> Launch:
    """The :class:`Launch` of the sweep ``name``: ``out`` defaults to the sweep's (its committed record with
    ``record``); a sweep with a record compares the new report with it unless it writes the record itself."""
    sweep = get_sweep(name)
    plan = make_plan(sweep, values)
    default = folders(sweep, plan)
    if record and sweep.record is None:
        raise ValueError(f"sweep {name!r} has no committed record; RECORD=1 applies to "
                         f"{[s.name for s in SWEEPS.values() if s.record]}")
    out = out or (sweep.record if record else default["out"])
    compare = sweep.record if sweep.record and not record and out != sweep.record else None
    return Launch(sweep, plan, sweep_dir or default["sweep_dir"], out, tuple(report_args), compare)


def go_ahead(launch: Launch, force: bool, is_tty: bool, macs_per_s: Callable[[], float] | None = None) -> bool:
    """Print the plan: on a GPU one line; else the estimate, then (GPU sweeps) ask first (:func:`confirm`)."""
    import torch

    from repro.cost import measure_matmul_throughput
    plan = launch.plan
    if torch.cuda.is_available():
        print(f"GPU found ({torch.cuda.get_device_name(0)}): starting {len(plan.jobs())} runs.")
        return True
    print(estimate_text(plan, sweep_macs(plan), (macs_per_s or measure_matmul_throughput)()), flush=True)
    return confirm(force, is_tty) if launch.sweep.needs_gpu else True


def run_sweep(launch: Launch, force: bool, is_tty: bool, dry_run: bool = False) -> int:
    """Estimate, then run every command of ``launch`` (``dry_run``: print them); the exit status of the
    first failing command, 1 when declined, else 0."""
    if not dry_run and not go_ahead(launch, force, is_tty):
        return 1
    for command in launch.commands():
        print("+ " + shlex.join(command), flush=True)
        if not dry_run:
            code = subprocess.run(command, cwd=REPO_ROOT).returncode
            if code:
                return code
    return 0
