"""CIFAR10 / CIFAR100 (and folders in their layout) read straight from the pickled batches.

torchvision is used only to fetch and extract the official archive; the files are
then checked against the official MD5s (optional) and read here, so a user's own
folder in the same layout loads the same way. See :mod:`repro.data.cifar_format`
for the layout.
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.data.cifar_format import IMAGE_SHAPE, CifarLayout, cifar_layout

__all__ = ["CifarSplits", "load_cifar", "dataset_folder", "read_cifar_folder", "verify_cifar_files",
           "fetch_cifar", "md5_of"]


@dataclass
class CifarSplits:
    """Raw CIFAR: images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]


def load_cifar(root: str | Path, kind: str, *, download: bool, verify_checksums: bool,
               fetch: bool = True) -> CifarSplits:
    """Load ``kind``'s files from ``root/<folder>``; fetch the official archive first
    when ``download`` and ``fetch`` and any file is missing (failures fall back to
    whatever is on disk)."""
    layout = cifar_layout(kind)
    folder = dataset_folder(root, layout)
    if download and fetch and _missing(folder, layout):
        fetch_cifar(root, kind)
    missing = _missing(folder, layout)
    if missing:
        raise ValueError(_missing_message(folder, layout, missing, download and fetch))
    if verify_checksums:
        verify_cifar_files(folder, layout)
    return read_cifar_folder(folder, layout)


def dataset_folder(root: str | Path, layout: CifarLayout) -> Path:
    """``root/<layout.folder>``, or ``root`` itself when it already holds the files."""
    root = Path(root)
    if (root / layout.train_files[0][0]).is_file() and not (root / layout.folder).is_dir():
        return root
    return root / layout.folder


def fetch_cifar(root: str | Path, kind: str) -> bool:
    """Download and extract the official archive into ``root`` with torchvision;
    ``False`` (and a warning) when that fails, e.g. offline."""
    from torchvision import datasets
    dataset_class = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[kind]
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        dataset_class(str(root), train=True, download=True)
        return True
    except Exception as err:  # network, disk or integrity failure: use what is on disk
        warnings.warn(f"could not download {kind} into {root} ({type(err).__name__}: {err}); "
                      f"falling back to an existing copy")
        return False


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_cifar_files(folder: Path, layout: CifarLayout) -> None:
    """Raise ``ValueError`` naming the first file whose MD5 is not the official one."""
    for name, expected in layout.all_files:
        actual = md5_of(folder / name)
        if actual != expected:
            raise ValueError(
                f"checksum mismatch for {folder / name}: md5 {actual}, official {layout.kind} "
                f"md5 {expected}; re-download it (delete the file, keep data.download=true), or "
                f"if this is your own CIFAR-format folder set data.verify_checksums=false")


def read_cifar_folder(folder: Path, layout: CifarLayout) -> CifarSplits:
    """Read the train and test batches and the class names of ``layout`` from ``folder``."""
    train_x, train_y = _read_batches(folder, layout, layout.train_files)
    test_x, test_y = _read_batches(folder, layout, layout.test_files)
    classes = _read_class_names(folder / layout.meta_file[0], layout)
    return CifarSplits(train_x, train_y, test_x, test_y, classes)


def _read_batches(folder: Path, layout: CifarLayout,
                  files: tuple[tuple[str, str], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name, _ in files:
        batch = _unpickle(folder / name)
        data, targets = batch.get("data"), batch.get(layout.label_key)
        _check_batch(folder / name, layout, data, targets)
        images.append(torch.from_numpy(np.ascontiguousarray(data)))
        labels.append(torch.as_tensor(np.asarray(targets, dtype=np.int64)))
    x = torch.cat(images).reshape(-1, *IMAGE_SHAPE)  # rows: 1024 R, 1024 G, 1024 B, row-major
    return x, torch.cat(labels)


def _check_batch(path: Path, layout: CifarLayout, data: Any, targets: Any) -> None:
    dim = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != dim:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, {dim}), "
                         f"got {dtype} {shape}")
    if targets is None or len(targets) != len(data):
        got = "no labels" if targets is None else f"{len(targets)} labels"
        raise ValueError(f"{path}: '{layout.label_key}' must hold {len(data)} labels, got {got}")
    targets = np.asarray(targets)
    if len(targets) and (targets.min() < 0 or targets.max() >= layout.num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {layout.num_classes}), "
                         f"got [{targets.min()}, {targets.max()}]")


def _read_class_names(path: Path, layout: CifarLayout) -> list[str]:
    names = _unpickle(path).get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        raise ValueError(f"{path}: '{layout.names_key}' must list {layout.num_classes} class names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numbers, strings and numpy arrays, nothing executable."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core."):  # files pickled by numpy 1.x (the official ones)
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module.startswith("numpy._core.") and not hasattr(np, "_core"):  # numpy < 2
            module = "numpy.core." + module[len("numpy._core."):]
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (files from Python 2 have ``bytes`` keys)."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as err:
        raise ValueError(f"could not read {path} as a CIFAR pickle ({type(err).__name__}: {err}); "
                         f"the file is truncated or not in the CIFAR python format") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _missing(folder: Path, layout: CifarLayout) -> list[str]:
    return [name for name, _ in layout.all_files if not (folder / name).is_file()]


def _missing_message(folder: Path, layout: CifarLayout, missing: list[str], tried: bool) -> str:
    how = ("downloading it failed (offline?)" if tried
           else "downloading is off (data.download=false, or data.name=cifar_folder)")
    return (f"{layout.kind} not found: {folder} lacks {', '.join(missing)} and {how}. "
            f"Put the files {', '.join(n for n, _ in layout.all_files)} in {folder} "
            f"(extract the official {layout.archive} into {folder.parent}), "
            f"or set data.root to the folder that holds {layout.folder}/")
