"""Data for the experiments: CIFAR10/100 (or a folder in their layout), MNIST-rot and ``digits_rot``.

``build_data(cfg)`` loads a data set, holds out a validation split (class-balanced; MNIST-rot: the
last rows, as the reference code), takes a class-balanced training subset, fits the preprocessing on
the training images (cached under ``<root>/.cache``) and returns tensors; ``build_augment(name, pad)``
gives the batched augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch

from gcnn.validation import check_choice, check_int, invalid
from repro.data.augment import AUGMENT_NAMES, build_augment
from repro.data.cifar_format import CIFAR_FORMATS, cifar_layout, load_cifar, write_cifar_folder
from repro.data.digits import load_digits_rot
from repro.data.errors import DataError
from repro.data.mnist_rot import IMAGE_SIDE, load_mnist_rot, write_mnist_rot_folder
from repro.data.preprocess import PREPROCESS_NAMES, fit_preprocessor
from repro.data.subsets import balanced_subset, split_off_balanced

__all__ = ["DataConfig", "DataBundle", "DataError", "build_data", "build_augment",
           "write_cifar_folder", "write_mnist_rot_folder", "DATASET_NAMES", "PREPROCESS_NAMES", "AUGMENT_NAMES"]

DATASET_NAMES = ("cifar10", "cifar100", "cifar_folder", "mnist_rot", "digits_rot")
_EXPECTED_FILES = {  # what data.root must hold (digits_rot is bundled)
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
    "cifar100": "cifar-100-python/ (train, test, meta)",
    "mnist_rot": "mnist_rotation_new/ (mnist_all_rotation_normalized_float_train_valid.amat, "
                 "mnist_all_rotation_normalized_float_test.amat)",
}
_SUBSET_SEED_OFFSET = 7919  # training subset draws differ from the validation-split draws


@dataclass
class DataConfig:
    """What :func:`build_data` loads. ``name``: ``cifar10`` | ``cifar100`` | ``cifar_folder`` (your
    folder in the layout ``format`` names) | ``mnist_rot`` (28x28) | ``digits_rot`` (bundled, upsampled
    to ``image_size``; the other data sets keep their size: ``mnist_rot`` refuses any other than 28 and
    reads the field's default as 28).
    ``root`` holds (or receives) the data and the ``.cache`` of preprocessing fits and parsed files.
    ``train_size``: class-balanced training subset (``None``: all); ``val_size``: validation images held
    out of the training set first (class-balanced; ``mnist_rot``: its last ``val_size`` rows, the
    reference code's split). ``seed``: rotations and subsets."""

    name: str = "digits_rot"
    root: str = "data"
    download: bool = True
    verify_checksums: bool = True
    format: str = "cifar10"
    preprocess: str = "standardize"
    train_size: int | None = None
    val_size: int = 0
    image_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name == "mnist_rot" and self.image_size == DataConfig.image_size:
            self.image_size = IMAGE_SIDE  # the field's default is digits_rot's; MNIST-rot records its own size

    @property
    def layout(self) -> str:
        """The on-disk CIFAR layout to read (``cifar10`` | ``cifar100``): a folder's ``format``, else ``name``."""
        return self.format if self.name == "cifar_folder" else self.name

    @property
    def num_classes(self) -> int:
        """Classes of the data set: its CIFAR layout's, else the ten digits."""
        return cifar_layout(self.layout).num_classes if self.layout in CIFAR_FORMATS else 10

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "DataConfig":
        """A validated ``DataConfig`` from a mapping (an OmegaConf ``DictConfig`` resolves on access)."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown data config key(s) {unknown}; valid keys: {known}")
        return cls(**cfg).validate()

    def validate(self) -> "DataConfig":
        """Raise ``ValueError`` (one line naming the value and what is valid) on a bad field,
        :class:`DataError` when ``root`` cannot hold the data; return ``self``."""
        for key, choices in (("name", DATASET_NAMES), ("preprocess", PREPROCESS_NAMES), ("format", CIFAR_FORMATS),
                             ("download", [True, False]), ("verify_checksums", [True, False])):
            check_choice(f"data.{key}", getattr(self, key), choices)
        if self.train_size is not None:
            check_int("data.train_size", self.train_size, minimum=1)
        for key, minimum in (("val_size", 0), ("image_size", 4), ("seed", 0)):
            check_int(f"data.{key}", getattr(self, key), minimum)
        if self.name == "mnist_rot" and self.image_size != IMAGE_SIDE:
            raise invalid("data.image_size", self.image_size, f"{IMAGE_SIDE} for data=mnist_rot (its images "
                          f"are {IMAGE_SIDE}x{IMAGE_SIDE} and are not resized)")
        if not isinstance(self.root, (str, Path)) or not str(self.root):
            raise invalid("data.root", self.root, "a non-empty path")
        root, shown = Path(self.root), repr(str(self.root))
        layout = _EXPECTED_FILES.get(self.layout)
        if root.exists() and not root.is_dir():
            where = f"that holds {layout}" if layout else "for the data and its .cache"
            raise DataError(f"data.root={shown} is a file, not a folder; set data.root to a folder {where}")
        if self.name == "cifar_folder" and not root.is_dir():  # a user's folder is never downloaded
            raise DataError(f"data.root={shown} does not exist; data=cifar_folder reads your own "
                            f"folder: point data.root at the folder that holds {layout}")
        if layout and not self.download and not root.is_dir():
            raise DataError(f"data.root={shown} does not exist and data.download=false; "
                            f"create it and put {layout} in it, or set data.download=true")
        return self


@dataclass
class DataBundle:
    """Preprocessed float32 images ``(N, C, H, W)`` and int64 labels ``(N,)``;
    ``val_x``/``val_y`` are ``None`` when ``val_size`` is 0."""

    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor | None = field(repr=False)
    val_y: torch.Tensor | None = field(repr=False)
    num_classes: int
    in_channels: int
    name: str
    classes: list[str] = field(repr=False)
    zca_shrinkage: float | None = None  # the fitted ZCA's alpha (0: the reference fit)


def _absolute(root: str | Path) -> Path:
    """``root`` against the launch folder (Hydra may change the cwd); plain ``absolute()`` where
    Hydra is not installed (the GPU machine runs the trainer from plain dict configs)."""
    try:
        from hydra.utils import to_absolute_path
    except ImportError:
        return Path(root).absolute()
    return Path(to_absolute_path(str(root)))


def build_data(cfg: DataConfig | Mapping) -> DataBundle:
    """Load, split, subset and preprocess the data set that ``cfg`` names. A mapping is validated
    here; a ``DataConfig`` was validated where it was built (:func:`repro.train.load_config`)."""
    cfg = cfg if isinstance(cfg, DataConfig) else DataConfig.from_mapping(cfg)
    root = _absolute(cfg.root)
    if cfg.name == "digits_rot":
        train_x, train_y, test_x, test_y, classes = load_digits_rot(cfg.image_size, cfg.seed)
        dataset = f"digits_rot-s{cfg.image_size}-seed{cfg.seed}"
    elif cfg.name == "mnist_rot":
        train_x, train_y, test_x, test_y, classes = load_mnist_rot(
            root, download=cfg.download, verify_checksums=cfg.verify_checksums)
        dataset = "mnist_rot"
    else:
        train_x, train_y, test_x, test_y, classes = load_cifar(
            root, cfg.layout, download=cfg.download, verify_checksums=cfg.verify_checksums,
            fetch=cfg.name != "cifar_folder")
        train_x, test_x = train_x.float() / 255, test_x.float() / 255
        dataset = f"cifar_folder-{cfg.layout}" if cfg.name == "cifar_folder" else cfg.layout
    train_idx, val_idx = _split_indices(cfg, train_y, len(classes))
    train_subset = train_x[train_idx]  # one copy: CIFAR's is 600 MB in float32
    prep = fit_preprocessor(cfg.preprocess, train_subset, dataset=dataset,
                            train_indices=train_idx, cache_dir=root / ".cache")
    val = (None, None) if val_idx is None else (prep.apply(train_x[val_idx]), train_y[val_idx])
    return DataBundle(
        train_x=prep.apply(train_subset), train_y=train_y[train_idx],
        test_x=prep.apply(test_x), test_y=test_y, val_x=val[0], val_y=val[1],
        num_classes=len(classes), in_channels=train_x.shape[1],
        name=cfg.name, classes=classes, zca_shrinkage=prep.shrinkage)


def _split_indices(cfg: DataConfig, labels: torch.Tensor, num_classes: int,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(train, val)`` indices into the training set: a ``val_size`` split (``None`` if 0; balanced, for
    ``mnist_rot`` the last rows), then a balanced ``train_size`` subset of the rest; a size the data
    cannot give is a :class:`DataError` naming it."""
    train_idx, val_idx = torch.arange(len(labels)), None
    pool = f"the {len(labels)} training images of {cfg.name}"
    if cfg.val_size:
        if cfg.val_size >= len(labels):
            raise DataError(f"data.val_size={cfg.val_size} leaves no training images: {pool} "
                            f"must also hold the training split; lower data.val_size")
        if cfg.name == "mnist_rot":  # reference code: train on the first 10,000, select on the last 2,000
            train_idx, val_idx = train_idx[:-cfg.val_size], train_idx[-cfg.val_size:]
        else:
            train_idx, val_idx = split_off_balanced(labels, cfg.val_size, num_classes, cfg.seed,
                                                    name="data.val_size", pool=pool)
        pool = f"the {len(train_idx)} training images left after data.val_size={cfg.val_size}"
    if cfg.train_size is not None:
        if cfg.train_size > len(train_idx):
            lower = "data.train_size or data.val_size" if cfg.val_size else "data.train_size"
            raise DataError(f"data.train_size={cfg.train_size} is larger than {pool}; "
                            f"lower {lower}")
        keep = balanced_subset(labels[train_idx], cfg.train_size, num_classes,
                               cfg.seed + _SUBSET_SEED_OFFSET, name="data.train_size", pool=pool)
        train_idx = train_idx[keep]
    return train_idx, val_idx
