"""The CIFAR on-disk layout (as torchvision downloads it) and a writer of small copies.

CIFAR10: ``<root>/cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``,
``test_batch`` and ``batches.meta``. CIFAR100: ``<root>/cifar-100-python/`` with
``train``, ``test`` and ``meta``. Every file is a pickled dict; a batch holds
``data`` (uint8 ``(N, 3072)``: the 1024 red, then green, then blue values of a
32x32 image in row-major order) and ``labels`` (CIFAR10) or ``fine_labels`` and
``coarse_labels`` (CIFAR100); the meta file holds ``label_names`` or
``fine_label_names``. File names and official MD5s come from torchvision's
``CIFAR10`` / ``CIFAR100`` classes.

:func:`write_cifar_folder` writes random images in exactly this layout, for
tests, demos and GPU smoke runs without the real data.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcnn.validation import check_choice

__all__ = ["CifarLayout", "cifar_layout", "write_cifar_folder", "CIFAR_FORMATS"]

IMAGE_SHAPE = (3, 32, 32)
CIFAR_FORMATS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class CifarLayout:
    """Where the files of one CIFAR variant live and what they are called."""

    kind: str                        # "cifar10" | "cifar100"
    folder: str                      # sub-folder of the data root
    train_files: tuple[tuple[str, str], ...]  # (file name, official md5)
    test_files: tuple[tuple[str, str], ...]
    meta_file: tuple[str, str]
    label_key: str                   # "labels" | "fine_labels"
    names_key: str                   # "label_names" | "fine_label_names"
    num_classes: int
    archive: str                     # the official .tar.gz name

    @property
    def all_files(self) -> tuple[tuple[str, str], ...]:
        return self.train_files + self.test_files + (self.meta_file,)


def cifar_layout(kind: str) -> CifarLayout:
    """The layout of ``kind`` (``cifar10`` | ``cifar100``), md5s read from torchvision."""
    from torchvision.datasets.cifar import CIFAR10, CIFAR100  # the classes, even if re-bound
    classes = {"cifar10": (CIFAR10, "labels", 10), "cifar100": (CIFAR100, "fine_labels", 100)}
    check_choice("data.format", kind, CIFAR_FORMATS)
    tv, label_key, num_classes = classes[kind]
    return CifarLayout(
        kind=kind, folder=tv.base_folder,
        train_files=tuple((name, md5) for name, md5 in tv.train_list),
        test_files=tuple((name, md5) for name, md5 in tv.test_list),
        meta_file=(tv.meta["filename"], tv.meta["md5"]),
        label_key=label_key, names_key=tv.meta["key"], num_classes=num_classes,
        archive=tv.filename)


def write_cifar_folder(root: str | Path, kind: str = "cifar10", n_train: int = 50,
                       n_test: int = 20, seed: int = 0) -> Path:
    """Write ``n_train`` / ``n_test`` random images with labels ``i % num_classes`` in
    ``kind``'s on-disk layout under ``root``; return the data-set folder
    (``root/cifar-10-batches-py`` or ``root/cifar-100-python``). CIFAR10's
    training images are spread over the five batches in order."""
    layout = cifar_layout(kind)
    if n_train < len(layout.train_files) or n_test < 1:
        raise ValueError(f"n_train={n_train} must be >= {len(layout.train_files)} and "
                         f"n_test={n_test} >= 1 for {kind}")
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = np.arange(n_train) % layout.num_classes
    train_data = rng.integers(0, 256, size=(n_train, int(np.prod(IMAGE_SHAPE))), dtype=np.uint8)
    parts = np.array_split(np.arange(n_train), len(layout.train_files))
    for (name, _), idx in zip(layout.train_files, parts):
        _dump(folder / name, _batch(layout, name, train_data[idx], train_labels[idx]))
    test_labels = np.arange(n_test) % layout.num_classes
    test_data = rng.integers(0, 256, size=(n_test, int(np.prod(IMAGE_SHAPE))), dtype=np.uint8)
    test_name = layout.test_files[0][0]
    _dump(folder / test_name, _batch(layout, test_name, test_data, test_labels))
    names = [f"class_{c:03d}" for c in range(layout.num_classes)]
    meta = {layout.names_key: names, "num_cases_per_batch": len(parts[0]),
            "num_vis": int(np.prod(IMAGE_SHAPE))}
    if kind == "cifar100":
        meta["coarse_label_names"] = [f"superclass_{c:02d}" for c in range(20)]
    _dump(folder / layout.meta_file[0], meta)
    return folder


def _batch(layout: CifarLayout, name: str, data: np.ndarray, labels: np.ndarray) -> dict:
    batch = {"batch_label": f"{name} written by repro.data.write_cifar_folder",
             "data": data, layout.label_key: [int(y) for y in labels],
             "filenames": [f"{name}_{i:05d}.png" for i in range(len(labels))]}
    if layout.kind == "cifar100":
        batch["coarse_labels"] = [int(y) // 5 for y in labels]
    return batch


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
