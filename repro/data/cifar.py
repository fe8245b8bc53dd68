"""CIFAR10 / CIFAR100 (and folders in their layout) read straight from the pickled batches.

torchvision is used only to fetch and extract the official archive; the files are
then checked against the official MD5s (optional) and read here, so a user's own
folder in the same layout loads the same way. See :mod:`repro.data.cifar_format`
for the layout.

Every problem with the files is a one-line :class:`~repro.data.errors.DataError`
naming the file (and the bad value) and saying what to do: a missing, empty,
truncated or non-pickle file, an MD5 mismatch, a ``data`` array that is not
``(N, 3072)`` uint8, labels that are not integer class indices in range
(integer-valued floats such as ``3.0`` are accepted, ``3.5`` is refused), meta
without the right number of class names, a root that is a file, and a folder
in the other CIFAR format (with the ``data.format`` to use instead).
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

from repro.data.cifar_format import CIFAR_FORMATS, IMAGE_SHAPE, CifarLayout, cifar_layout
from repro.data.errors import DataError

__all__ = ["CifarSplits", "load_cifar", "dataset_folder", "read_cifar_folder", "verify_cifar_files",
           "fetch_cifar", "md5_of", "detect_cifar_format"]

_REPLACE = ("replace it with an intact copy (for data=cifar10 or data=cifar100: delete it and "
            "rerun with data.download=true)")
_IMAGE_DIM = int(np.prod(IMAGE_SHAPE))


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
    whatever is on disk). ``fetch=False`` marks a user's folder (``data=cifar_folder``):
    advice then names ``data.format`` rather than ``data=<kind>``."""
    layout = cifar_layout(kind)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is a file, not a folder; set data.root to the "
                        f"folder that holds {layout.folder}/ (or to that folder itself)")
    folder = dataset_folder(root, layout)
    if download and fetch and _missing(folder, layout):
        fetch_cifar(root, kind)
    missing = _missing(folder, layout)
    if missing:
        other = detect_cifar_format(root)
        if other is not None and other != kind:
            raise DataError(f"{root} holds {other} files, not {kind} ones ({folder} lacks "
                            f"{', '.join(missing)}): it looks like {other}; "
                            f"{_switch_advice(other, official=fetch)}")
        raise DataError(_missing_message(folder, layout, missing, download and fetch))
    if verify_checksums:
        verify_cifar_files(folder, layout)
    return read_cifar_folder(folder, layout, official=fetch)


def dataset_folder(root: str | Path, layout: CifarLayout) -> Path:
    """``root/<layout.folder>``, or ``root`` itself when it already holds the files."""
    root = Path(root)
    if (root / layout.train_files[0][0]).is_file() and not (root / layout.folder).is_dir():
        return root
    return root / layout.folder


def detect_cifar_format(root: str | Path) -> str | None:
    """The CIFAR format (``cifar10`` | ``cifar100``) whose files are all present under
    ``root`` (in its sub-folder or in ``root`` itself), or ``None``."""
    for kind in CIFAR_FORMATS:
        layout = cifar_layout(kind)
        if not _missing(dataset_folder(root, layout), layout):
            return kind
    return None


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
    """Raise :class:`DataError` naming the first file whose MD5 is not the official one."""
    for name, expected in layout.all_files:
        actual = md5_of(folder / name)
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {folder / name}: md5 {actual}, official {layout.kind} "
                f"md5 {expected}; re-download it (delete the file, keep data.download=true), or "
                f"if this is your own CIFAR-format folder set data.verify_checksums=false")


def read_cifar_folder(folder: Path, layout: CifarLayout, *, official: bool = False) -> CifarSplits:
    """Read the train and test batches and the class names of ``layout`` from ``folder``
    (``official``: advice names ``data=<kind>`` rather than ``data.format``)."""
    train_x, train_y = _read_batches(folder, layout, layout.train_files, official)
    test_x, test_y = _read_batches(folder, layout, layout.test_files, official)
    classes = _read_class_names(folder / layout.meta_file[0], layout, official)
    return CifarSplits(train_x, train_y, test_x, test_y, classes)


def _read_batches(folder: Path, layout: CifarLayout, files: tuple[tuple[str, str], ...],
                  official: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name, _ in files:
        path = folder / name
        batch = _unpickle(path)
        images.append(torch.from_numpy(np.ascontiguousarray(_batch_images(path, batch))))
        labels.append(torch.from_numpy(_batch_labels(path, layout, batch, len(images[-1]),
                                                     official)))
    x = torch.cat(images).reshape(-1, *IMAGE_SHAPE)  # rows: 1024 R, 1024 G, 1024 B, row-major
    if len(x) == 0:
        raise DataError(f"{folder}: {', '.join(n for n, _ in files)} hold no images; "
                        f"{_REPLACE}")
    return x, torch.cat(labels)


def _batch_images(path: Path, batch: dict[str, Any]) -> np.ndarray:
    """``batch['data']``, checked to be a uint8 ``(N, 3072)`` array."""
    expected = f"expected a (N, {_IMAGE_DIM}) uint8 array (N images of 3x32x32, channel-major)"
    if "data" not in batch:
        raise DataError(f"{path} has no 'data' entry (keys: {sorted(batch)}); {expected}")
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' is a {type(data).__name__}; {expected}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_DIM:
        raise DataError(f"{path}: 'data' has shape {tuple(data.shape)} and dtype {data.dtype}; "
                        f"{expected}")
    return data


def _batch_labels(path: Path, layout: CifarLayout, batch: dict[str, Any], count: int,
                  official: bool) -> np.ndarray:
    """``batch[layout.label_key]`` as int64 ``(count,)``, checked to be class indices."""
    key = layout.label_key
    if key not in batch:
        raise DataError(f"{path} has no '{key}' entry (keys: {sorted(batch)}); "
                        + _format_hint(batch, "label_key", layout, official,
                                       f"expected {count} {layout.kind} labels"))
    raw = batch[key]
    values = raw if isinstance(raw, np.ndarray) else np.asarray(raw, dtype=object)
    if values.ndim != 1 or len(values) != count:
        raise DataError(f"{path}: '{key}' has shape {tuple(values.shape)} but 'data' holds "
                        f"{count} images; expected one integer label per image")
    numbers = _as_numbers(values)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: label {_plain(values[i])!r} (image {i}) in '{key}' is not an "
                        f"integer class index; expected integers 0..{layout.num_classes - 1} for "
                        f"{layout.kind}'s {layout.num_classes} classes")
    out = (numbers < 0) | (numbers >= layout.num_classes)
    if out.any():
        i = int(np.argmax(out))
        raise DataError(f"{path}: label {int(numbers[i])} (image {i}) in '{key}' is out of range "
                        f"for {layout.kind}'s {layout.num_classes} classes; expected "
                        f"0..{layout.num_classes - 1}")
    return numbers.astype(np.int64)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages: ``3.5``, not
    ``np.float64(3.5)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_numbers(values: np.ndarray) -> np.ndarray:
    """``values`` as float64 (exact for CIFAR-sized integers); NaN for anything that is
    not a real number (strings, ``None``, booleans)."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return np.array([float(v) if isinstance(v, (int, float, np.integer, np.floating))
                     and not isinstance(v, (bool, np.bool_)) else np.nan
                     for v in values.tolist()], dtype=np.float64)


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
    """Advice for a file that lacks ``layout``'s key ``field``: switch formats when the
    other format's key is there, else ``otherwise``."""
    for kind in CIFAR_FORMATS:
        other = cifar_layout(kind)
        if kind != layout.kind and getattr(other, field) in entries:
            return f"it looks like {kind}; {_switch_advice(kind, official)}"
    return otherwise


def _switch_advice(kind: str, official: bool) -> str:
    if official:
        return f"use data={kind} (or data=cifar_folder data.format={kind})"
    return f"set data.format={kind}"


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


def _missing(folder: Path, layout: CifarLayout) -> list[str]:
    return [name for name, _ in layout.all_files if not (folder / name).is_file()]


def _missing_message(folder: Path, layout: CifarLayout, missing: list[str], tried: bool) -> str:
    how = ("downloading it failed (offline?)" if tried
           else "downloading is off (data.download=false, or data.name=cifar_folder)")
    return (f"{layout.kind} not found: {folder} lacks {', '.join(missing)} and {how}. "
            f"Put the files {', '.join(n for n, _ in layout.all_files)} in {folder} "
            f"(extract the official {layout.archive} into {folder.parent}), "
            f"or set data.root to the folder that holds {layout.folder}/")
