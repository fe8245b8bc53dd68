"""``DataConfig``: which data set to load, from where, and how to prepare it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from gcnn.validation import check_choice, check_int, invalid
from repro.data.cifar_format import CIFAR_FORMATS
from repro.data.errors import DataError

__all__ = ["DataConfig", "DATASET_NAMES", "PREPROCESS_NAMES", "CIFAR_FORMATS"]

DATASET_NAMES = ("cifar10", "cifar100", "cifar_folder", "digits_rot")
PREPROCESS_NAMES = ("zca", "standardize", "none")
_NEEDS_FILES = ("cifar10", "cifar100", "cifar_folder")  # read from ``root``; digits_rot is bundled
_EXPECTED_FILES = {
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
    "cifar100": "cifar-100-python/ (train, test, meta)",
}


@dataclass
class DataConfig:
    """What :func:`repro.data.build_data` loads.

    ``name``: ``cifar10`` | ``cifar100`` | ``cifar_folder`` (a folder of yours in the
    on-disk layout named by ``format``) | ``digits_rot`` (scikit-learn's 8x8 digits,
    upsampled to ``image_size`` and randomly rotated; bundled, no download).
    ``root``: folder that holds (or receives) the data set and the ``.cache`` of
    preprocessing fits. ``train_size``: class-balanced subset of the training set
    (``None`` = all of it). ``val_size``: class-balanced validation images held out
    of the training set first. ``seed``: rotations and subsets.
    """

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

    @classmethod
    def from_mapping(cls, cfg: "DataConfig | Mapping[str, Any]") -> "DataConfig":
        """A validated ``DataConfig`` from itself, a dict or an OmegaConf ``DictConfig``."""
        if isinstance(cfg, DataConfig):
            return dataclasses.replace(cfg).validate()
        cfg = _to_plain_dict(cfg)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown data config key(s) {unknown}; valid keys: {known}")
        return cls(**cfg).validate()

    def validate(self) -> "DataConfig":
        """Raise ``ValueError`` (one line naming the value and what is valid) on a bad
        field, :class:`DataError` when ``root`` cannot hold the data; return ``self``."""
        check_choice("data.name", self.name, DATASET_NAMES)
        check_choice("data.preprocess", self.preprocess, PREPROCESS_NAMES)
        check_choice("data.format", self.format, CIFAR_FORMATS)
        for key in ("download", "verify_checksums"):
            check_choice(f"data.{key}", getattr(self, key), [True, False])
        if self.train_size is not None:
            check_int("data.train_size", self.train_size, minimum=1)
        check_int("data.val_size", self.val_size, minimum=0)
        check_int("data.image_size", self.image_size, minimum=4)
        check_int("data.seed", self.seed, minimum=0)
        if not isinstance(self.root, (str, Path)) or not str(self.root):
            raise invalid("data.root", self.root, "a non-empty path")
        self._check_root()
        return self

    def _check_root(self) -> None:
        root = Path(self.root)
        layout = _EXPECTED_FILES[self.format if self.name == "cifar_folder" else self.name] \
            if self.name in _NEEDS_FILES else None
        if root.exists() and not root.is_dir():
            where = f"that holds {layout}" if layout else "for the data and its .cache"
            raise DataError(f"data.root={str(self.root)!r} is a file, not a folder; set "
                            f"data.root to a folder {where}")
        if self.name == "cifar_folder" and not root.is_dir():  # a user's folder is never downloaded
            raise DataError(f"data.root={str(self.root)!r} does not exist; data=cifar_folder reads your own "
                            f"folder: point data.root at the folder that holds {layout}")
        if layout and not self.download and not root.is_dir():
            raise DataError(
                f"data.root={str(self.root)!r} does not exist and data.download=false; "
                f"create it and put {layout} in it, or set data.download=true")


def _to_plain_dict(cfg: Any) -> dict[str, Any]:
    try:  # an OmegaConf DictConfig: resolve ${oc.env:...} and friends
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf is a project dependency
        pass
    if not isinstance(cfg, Mapping):
        raise ValueError(f"data config must be a DataConfig or a mapping, got {type(cfg).__name__}")
    return dict(cfg)
