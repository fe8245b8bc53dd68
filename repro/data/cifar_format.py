"""CIFAR10 / CIFAR100 on disk as torchvision downloads them: the layout, our reader and a writer of small copies.

CIFAR10 is ``<root>/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``), CIFAR100 ``<root>/cifar-100-python/`` (``train``, ``test``, ``meta``). Every
file is a pickled dict: a batch holds ``data``, uint8 ``(N, 3072)`` (the 1024 red, then green,
then blue values of a 32x32 image, row-major), and ``labels`` (CIFAR10) or ``fine_labels`` and
``coarse_labels`` (CIFAR100); the meta file holds ``label_names`` or ``fine_label_names``.
The reader unpickles the files itself (torchvision only fetches the official archive); every
problem with them is a one-line :class:`DataError` naming the file and saying what to do.
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

from gcnn.validation import check_choice
from repro.data.errors import DataError

IMAGE_DIM = 3 * 32 * 32
CIFAR_FORMATS = ("cifar10", "cifar100")
_OTHER_FORMAT = {"cifar10": "cifar100", "cifar100": "cifar10"}
_REPLACE = ("replace it with an intact copy (for data=cifar10 or data=cifar100: delete it and "
            "rerun with data.download=true)")


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


def load_cifar(root: str | Path, kind: str, *, download: bool, verify_checksums: bool,
               fetch: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                            list[str]]:
    """``(train_x, train_y, test_x, test_y, classes)`` of ``kind`` from ``root/<folder>`` (or
    ``root`` itself): images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)``. With ``download``
    and ``fetch`` a missing file fetches the official archive first (on failure: whatever is on
    disk). ``fetch=False`` marks a user's folder: advice names ``data.format``, not ``data=<kind>``."""
    layout, root = cifar_layout(kind), Path(root)
    folder = _dataset_folder(root, layout)
    if download and fetch and _missing(folder, layout):
        _download(root, kind)
    missing = _missing(folder, layout)
    if missing:
        other = cifar_layout(_OTHER_FORMAT[kind])
        if not _missing(_dataset_folder(root, other), other):
            raise DataError(f"{root} holds {other.kind} files, not {kind} ones ({folder} lacks "
                            f"{', '.join(missing)}): {_looks_like(other.kind, official=fetch)}")
        how = ("downloading it failed (offline?)" if download and fetch
               else "downloading is off (data.download=false, or data.name=cifar_folder)")
        raise DataError(f"{kind} not found: {folder} lacks {', '.join(missing)} and {how}. "
                        f"Put the files {', '.join(n for n, _ in layout.all_files)} in {folder} "
                        f"(extract the official {layout.archive} into {folder.parent}), "
                        f"or set data.root to the folder that holds {layout.folder}/")
    if verify_checksums:
        for name, expected in layout.all_files:
            actual = md5_of(folder / name)
            if actual != expected:
                raise DataError(f"checksum mismatch for {folder / name}: md5 {actual}, official {kind} md5 "
                                f"{expected}; re-download it (delete the file, keep data.download=true), or "
                                f"if this is your own CIFAR-format folder set data.verify_checksums=false")
    train_x, train_y = _read_batches(folder, layout, layout.train_files, fetch)
    test_x, test_y = _read_batches(folder, layout, layout.test_files, fetch)
    return train_x, train_y, test_x, test_y, _read_class_names(folder / layout.meta_file[0], layout, fetch)


def md5_of(path: Path) -> str:
    """Hex MD5 of a file."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _dataset_folder(root: Path, layout: CifarLayout) -> Path:
    """``root/<layout.folder>``, or ``root`` itself when it already holds the files."""
    if (root / layout.train_files[0][0]).is_file() and not (root / layout.folder).is_dir():
        return root
    return root / layout.folder


def _missing(folder: Path, layout: CifarLayout) -> list[str]:
    return [name for name, _ in layout.all_files if not (folder / name).is_file()]


def _download(root: Path, kind: str) -> None:
    """Download and extract the official archive into ``root`` with torchvision; warn on failure."""
    from torchvision import datasets
    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(datasets, kind.upper())(str(root), train=True, download=True)
    except Exception as err:  # network, disk or integrity failure: use what is on disk
        warnings.warn(f"could not download {kind} into {root} ({type(err).__name__}: {err}); "
                      f"falling back to an existing copy")


def _read_batches(folder: Path, layout: CifarLayout, files: tuple[tuple[str, str], ...],
                  official: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name, _ in files:
        batch = _unpickle(folder / name)
        images.append(torch.from_numpy(_batch_images(folder / name, batch)))
        labels.append(torch.from_numpy(_batch_labels(folder / name, layout, batch, len(images[-1]),
                                                     official)))
    x = torch.cat(images).reshape(-1, 3, 32, 32)
    if len(x) == 0:
        raise DataError(f"{folder}: {', '.join(n for n, _ in files)} hold no images; {_REPLACE}")
    return x, torch.cat(labels)


def _batch_images(path: Path, batch: dict[str, Any]) -> np.ndarray:
    """``batch['data']``, checked to be a uint8 ``(N, 3072)`` array."""
    expected = f"expected a (N, {IMAGE_DIM}) uint8 array (N images of 3x32x32, channel-major)"
    if "data" not in batch:
        raise DataError(f"{path} has no 'data' entry (keys: {sorted(batch)}); {expected}")
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' is a {type(data).__name__}; {expected}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_DIM:
        raise DataError(f"{path}: 'data' has shape {tuple(data.shape)} and dtype {data.dtype}; "
                        f"{expected}")
    return data


def _batch_labels(path: Path, layout: CifarLayout, batch: dict[str, Any], count: int,
                  official: bool) -> np.ndarray:
    """``batch[layout.label_key]`` as int64 ``(count,)``, checked to be class indices
    (integer-valued floats such as ``3.0`` are accepted)."""
    key, classes = layout.label_key, f"{layout.kind}'s {layout.num_classes} classes"
    if key not in batch:
        raise DataError(f"{path} has no '{key}' entry (keys: {sorted(batch)}); "
                        + _format_hint(batch, "label_key", layout, official,
                                       f"expected {count} {layout.kind} labels"))
    values = batch[key] if isinstance(batch[key], np.ndarray) else np.asarray(batch[key], dtype=object)
    if values.ndim != 1 or len(values) != count:
        raise DataError(f"{path}: '{key}' has shape {tuple(values.shape)} but 'data' holds "
                        f"{count} images; expected one integer label per image")
    for i, value in enumerate(values.tolist()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise DataError(f"{path}: label {value!r} (image {i}) in '{key}' is not an integer "
                            f"class index; expected integers 0..{layout.num_classes - 1} for {classes}")
        if not 0 <= value < layout.num_classes:
            raise DataError(f"{path}: label {int(value)} (image {i}) in '{key}' is out of range "
                            f"for {classes}; expected 0..{layout.num_classes - 1}")
    return values.astype(np.int64)


def _read_class_names(path: Path, layout: CifarLayout, official: bool) -> list[str]:
    meta = _unpickle(path)
    key, count = layout.names_key, layout.num_classes
    if key not in meta:
        raise DataError(f"{path} has no '{key}' entry (keys: {sorted(meta)}); " + _format_hint(
            meta, "names_key", layout, official, f"expected the list of {count} class names"))
    names = meta[key]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: '{key}' is not a list of strings; expected the list of "
                        f"{count} class names of {layout.kind}")
    if len(names) != count:
        raise DataError(f"{path}: '{key}' lists {len(names)} class names; expected {count} "
                        f"for {layout.kind}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _format_hint(entries: dict[str, Any], field: str, layout: CifarLayout, official: bool,
                 otherwise: str) -> str:
    """For a file lacking ``layout``'s key ``field``: switch formats if the other one's key is there."""
    other = cifar_layout(_OTHER_FORMAT[layout.kind])
    return _looks_like(other.kind, official) if getattr(other, field) in entries else otherwise


def _looks_like(kind: str, official: bool) -> str:
    advice = f"use data={kind} (or data=cifar_folder data.format={kind})" if official else f"set data.format={kind}"
    return f"it looks like {kind}; {advice}"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numbers, strings and numpy arrays, nothing executable."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.", 1)  # numpy 1.x pickles (the official files)
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if not hasattr(np, "_core"):  # running numpy < 2
            module = module.replace("numpy._core.", "numpy.core.", 1)
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (files from Python 2 have ``bytes`` keys)."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except OSError as err:
        raise DataError(f"could not open {path} ({err.strerror or err}); check that it is a "
                        f"readable file") from err
    except Exception as err:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes); {_REPLACE}") from err
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        raise DataError(f"could not read {path} as a CIFAR pickle ({detail}); the file is "
                        f"truncated or not in the CIFAR python format: {_REPLACE}") from err
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a pickled {type(obj).__name__}, not the dict of a CIFAR "
                        f"file; {_REPLACE}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


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
