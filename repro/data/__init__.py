"""Data for the experiments: CIFAR10/100 (or a folder in their layout) and ``digits_rot``.

``build_data(cfg)`` loads a data set, holds out a class-balanced validation split,
takes a class-balanced training subset, fits the preprocessing on the training
images (cached under ``<root>/.cache``) and returns everything as tensors;
``build_augment(name, pad)`` gives the batched training augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from repro.data.augment import AUGMENT_NAMES, build_augment
from repro.data.cifar import load_cifar
from repro.data.cifar_format import write_cifar_folder
from repro.data.config import DATASET_NAMES, PREPROCESS_NAMES, DataConfig
from repro.data.digits import load_digits_rot
from repro.data.errors import DataError
from repro.data.preprocess import fit_preprocessor
from repro.data.subsets import balanced_subset, split_off_balanced

__all__ = ["DataConfig", "DataBundle", "DataError", "build_data", "build_augment",
           "write_cifar_folder",
           "DATASET_NAMES", "PREPROCESS_NAMES", "AUGMENT_NAMES"]

_SUBSET_SEED_OFFSET = 7919  # training subset draws differ from the validation-split draws


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
    image_size: int
    name: str
    classes: list[str] = field(repr=False)
    zca_shrinkage: float | None = None  # the fitted ZCA's alpha (0: the reference fit)

    def summary(self) -> str:
        """One line: name, split sizes and image shape."""
        val = 0 if self.val_y is None else len(self.val_y)
        return (f"{self.name}: {len(self.train_y)} train / {val} val / {len(self.test_y)} test, "
                f"{self.in_channels}x{self.image_size}x{self.image_size}, "
                f"{self.num_classes} classes")


def build_data(cfg: DataConfig | Mapping) -> DataBundle:
    """Load, split, subset and preprocess the data set that ``cfg`` names."""
    cfg = DataConfig.from_mapping(cfg)
    root = _absolute(cfg.root)
    train_x, train_y, test_x, test_y, classes = _load_raw(cfg, root)
    num_classes = len(classes)
    train_idx, val_idx = _split_indices(cfg, train_y, num_classes)
    train_subset = train_x[train_idx]  # one copy: CIFAR's is 600 MB in float32
    prep = fit_preprocessor(cfg.preprocess, train_subset, dataset=_dataset_id(cfg),
                            train_indices=train_idx, cache_dir=root / ".cache")
    val = (None, None) if val_idx is None else (prep.apply(train_x[val_idx]), train_y[val_idx])
    return DataBundle(
        train_x=prep.apply(train_subset), train_y=train_y[train_idx],
        test_x=prep.apply(test_x), test_y=test_y, val_x=val[0], val_y=val[1],
        num_classes=num_classes, in_channels=train_x.shape[1], image_size=train_x.shape[-1],
        name=cfg.name, classes=classes, zca_shrinkage=prep.shrinkage)


def _split_indices(cfg: DataConfig, labels: torch.Tensor, num_classes: int,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(train, val)`` indices into the training set: a balanced validation split of
    ``val_size`` (``None`` if 0), then a balanced ``train_size`` subset of the rest.
    A size the data cannot give is a :class:`DataError` naming the split."""
    train_idx, val_idx = torch.arange(len(labels)), None
    pool = f"the {len(labels)} training images of {cfg.name}"
    if cfg.val_size:
        if cfg.val_size >= len(labels):
            raise DataError(f"data.val_size={cfg.val_size} leaves no training images: {pool} "
                            f"must also hold the training split; lower data.val_size")
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


def _load_raw(cfg: DataConfig, root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor, list[str]]:
    """Images float32 ``(N, C, H, W)`` in [0, 1], labels int64, class names."""
    if cfg.name == "digits_rot":
        return load_digits_rot(cfg.image_size, cfg.seed)
    kind = cfg.format if cfg.name == "cifar_folder" else cfg.name
    splits = load_cifar(root, kind, download=cfg.download, verify_checksums=cfg.verify_checksums,
                        fetch=cfg.name != "cifar_folder")
    return (splits.train_x.float() / 255, splits.train_y, splits.test_x.float() / 255,
            splits.test_y, splits.classes)


def _dataset_id(cfg: DataConfig) -> str:
    if cfg.name == "digits_rot":
        return f"digits_rot-s{cfg.image_size}-seed{cfg.seed}"
    return f"cifar_folder-{cfg.format}" if cfg.name == "cifar_folder" else cfg.name


def _absolute(root: str | Path) -> Path:
    """``root`` made absolute against the launch directory (Hydra may change the cwd)."""
    try:
        from hydra.utils import to_absolute_path
        return Path(to_absolute_path(str(root)))
    except ImportError:  # pragma: no cover - hydra is a project dependency
        return Path(root).absolute()
