"""``DataConfig``: which data set to load, from where, and how to prepare it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["DataConfig", "DATASET_NAMES", "PREPROCESS_NAMES", "CIFAR_FORMATS"]

DATASET_NAMES = ("cifar10", "cifar100", "cifar_folder", "digits_rot")
PREPROCESS_NAMES = ("zca", "standardize", "none")
CIFAR_FORMATS = ("cifar10", "cifar100")
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
        """Raise ``ValueError`` (one line naming the value and the choices) on a bad field;
        return ``self``."""
        _check_choice("data.name", self.name, DATASET_NAMES)
        _check_choice("data.preprocess", self.preprocess, PREPROCESS_NAMES)
        _check_choice("data.format", self.format, CIFAR_FORMATS)
        for key in ("download", "verify_checksums"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"data.{key}={getattr(self, key)!r} must be true or false")
        if self.train_size is not None:
            _check_int("data.train_size", self.train_size, minimum=1)
        _check_int("data.val_size", self.val_size, minimum=0)
        _check_int("data.image_size", self.image_size, minimum=4)
        _check_int("data.seed", self.seed, minimum=0)
        if not isinstance(self.root, (str, Path)) or not str(self.root):
            raise ValueError(f"data.root={self.root!r} must be a non-empty path")
        if self.name in _NEEDS_FILES and not self.download and not Path(self.root).is_dir():
            layout = _EXPECTED_FILES[self.format if self.name == "cifar_folder" else self.name]
            raise ValueError(
                f"data.root={str(self.root)!r} does not exist and data.download=false; "
                f"create it and put {layout} in it, or set data.download=true")
        return self


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


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of {list(choices)}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r} must be an integer >= {minimum}")
