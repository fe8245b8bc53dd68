"""The CIFAR on-disk layout (as torchvision downloads it) and a writer of small copies.

CIFAR10 is ``<root>/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``), CIFAR100 ``<root>/cifar-100-python/`` (``train``, ``test``, ``meta``). Every
file is a pickled dict: a batch holds ``data``, uint8 ``(N, 3072)`` (the 1024 red, then green,
then blue values of a 32x32 image, row-major), and ``labels`` (CIFAR10) or ``fine_labels`` and
``coarse_labels`` (CIFAR100); the meta file holds ``label_names`` or ``fine_label_names``.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcnn.validation import check_choice

IMAGE_SHAPE = (3, 32, 32)
IMAGE_DIM = 3 * 32 * 32
CIFAR_FORMATS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class CifarLayout:
    """One CIFAR variant's sub-folder, ``(file name, official md5)`` pairs and pickle keys."""

    kind: str
    folder: str
    train_files: tuple[tuple[str, str], ...]
    test_files: tuple[tuple[str, str], ...]
    meta_file: tuple[str, str]
    label_key: str  # "labels" | "fine_labels"
    names_key: str  # "label_names" | "fine_label_names"
    num_classes: int
    archive: str    # the official .tar.gz

    @property
    def all_files(self) -> tuple[tuple[str, str], ...]:
        return self.train_files + self.test_files + (self.meta_file,)


def cifar_layout(kind: str) -> CifarLayout:
    """The layout of ``kind`` (``cifar10`` | ``cifar100``), names and md5s from torchvision."""
    from torchvision.datasets.cifar import CIFAR10, CIFAR100  # the classes, even if re-bound
    check_choice("data.format", kind, CIFAR_FORMATS)
    tv, label_key, num_classes = {"cifar10": (CIFAR10, "labels", 10),
                                  "cifar100": (CIFAR100, "fine_labels", 100)}[kind]
    return CifarLayout(kind, tv.base_folder, tuple(map(tuple, tv.train_list)),
                       tuple(map(tuple, tv.test_list)), (tv.meta["filename"], tv.meta["md5"]),
                       label_key, tv.meta["key"], num_classes, tv.filename)


def write_cifar_folder(root: str | Path, kind: str = "cifar10", n_train: int = 50,
                       n_test: int = 20, seed: int = 0) -> Path:
    """Write ``n_train`` / ``n_test`` random images with labels ``i % num_classes`` in ``kind``'s
    exact on-disk layout under ``root`` (for tests, demos and smoke runs); return the data-set
    folder. CIFAR10's training images are spread over its five batches in order."""
    layout = cifar_layout(kind)
    if n_train < len(layout.train_files) or n_test < 1:
        raise ValueError(f"n_train={n_train} must be >= {len(layout.train_files)} and "
                         f"n_test={n_test} >= 1 for {kind}")
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_data = rng.integers(0, 256, size=(n_train, IMAGE_DIM), dtype=np.uint8)
    parts = np.array_split(np.arange(n_train), len(layout.train_files))
    batches = [(name, train_data[idx], idx % layout.num_classes)
               for (name, _), idx in zip(layout.train_files, parts)]
    batches.append((layout.test_files[0][0], rng.integers(0, 256, size=(n_test, IMAGE_DIM), dtype=np.uint8),
                    np.arange(n_test) % layout.num_classes))
    contents = {}
    for name, data, labels in batches:
        contents[name] = {"batch_label": f"{name} written by repro.data.write_cifar_folder",
                          "data": data, layout.label_key: labels.tolist(),
                          "filenames": [f"{name}_{i:05d}.png" for i in range(len(labels))]}
        if kind == "cifar100":
            contents[name]["coarse_labels"] = (labels // 5).tolist()
    contents[layout.meta_file[0]] = {layout.names_key: [f"class_{c:03d}" for c in range(layout.num_classes)],
                                     "num_cases_per_batch": len(parts[0]), "num_vis": IMAGE_DIM}
    if kind == "cifar100":
        contents[layout.meta_file[0]]["coarse_label_names"] = [f"superclass_{c:02d}" for c in range(20)]
    for name, obj in contents.items():
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return folder
