"""MNIST-rot (Larochelle et al. 2007) on disk: the ``.amat`` layout, our reader with its binary cache,
the download, and a writer of small copies.

The data set is ``<root>/mnist_rotation_new/`` (or ``<root>`` itself when it holds the files):
``mnist_all_rotation_normalized_float_train_valid.amat`` (12,000 lines) and
``mnist_all_rotation_normalized_float_test.amat`` (50,000 lines). Every line is 785
whitespace-separated numbers: the 784 pixels of a 28x28 image (row-major, values in [0, 1]),
then the label as a float (``3.0``). The text is parsed once and cached as float32 tensors in
``<root>/.cache/mnist_rot-<key>.pt``, ``key`` hashing each file's name, size and modification
time, so an edited or replaced file is parsed again. Every problem is a one-line
:class:`DataError` naming the file (and line) and saying what to do.
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from repro.data.cifar_format import md5_of
from repro.data.errors import DataError
from repro.io import atomic_write, save_torch

FOLDER = "mnist_rotation_new"
TRAIN_FILE = "mnist_all_rotation_normalized_float_train_valid.amat"
TEST_FILE = "mnist_all_rotation_normalized_float_test.amat"
OFFICIAL_ROWS = {TRAIN_FILE: 12_000, TEST_FILE: 50_000}
IMAGE_SIDE = 28
NUM_CLASSES = 10
ARCHIVE_URL = "http://www.iro.umontreal.ca/~lisa/icml2007data/mnist_rotation_new.zip"
# Not published by the data set's authors: the MD5 that torchvision-style MNIST-rot loaders in other
# public projects pin for this URL (e.g. an ``MNIST_rot(VisionDataset)`` whose ``resources`` list it).
ARCHIVE_MD5 = "0f9a947ff3d30e95cd685462cbf3b847"
ARCHIVE_NAME = "mnist_rotation_new.zip"
_COLUMNS = IMAGE_SIDE * IMAGE_SIDE + 1
_CACHE_VERSION = 1
_FILES = f"{TRAIN_FILE} and {TEST_FILE}"
_REPLACE = (f"replace it with the official file (delete {FOLDER}/ and rerun with data.download=true), "
            f"or fix your own file")


def load_mnist_rot(root: str | Path, *, download: bool, verify_checksums: bool,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """``(train_x, train_y, test_x, test_y, classes)`` from ``root``: images float32 ``(N, 1, 28, 28)``
    in [0, 1], labels int64 ``(N,)``, classes ``"0".."9"``; rows in file order. ``download``: fetch
    and unzip the official archive if a file is missing. ``verify_checksums``: check the archive's MD5
    and the official row counts (off: any number of rows, for subsets and your own files)."""
    root = Path(root)
    folder = dataset_folder(root)
    if download and missing_files(folder):
        download_mnist_rot(root, verify_checksums)
    missing = missing_files(folder)
    if missing:
        how = "downloading did not provide them" if download else "data.download=false"
        raise DataError(f"MNIST-rot not found: {folder} lacks {', '.join(missing)} and {how}; put {_FILES} "
                        f"in {folder} (unzip {ARCHIVE_URL} there), set data.download=true, or set "
                        f"data.root to the folder that holds {FOLDER}/")
    train_x, train_y, test_x, test_y = _cached_arrays(root, folder)
    if verify_checksums:
        for name, labels in ((TRAIN_FILE, train_y), (TEST_FILE, test_y)):
            if len(labels) != OFFICIAL_ROWS[name]:
                raise DataError(f"{folder / name} has {len(labels)} rows, the official file "
                                f"{OFFICIAL_ROWS[name]}: {_REPLACE}; for a subset or your own "
                                f"files in this format set data.verify_checksums=false")
    return train_x, train_y, test_x, test_y, [str(c) for c in range(NUM_CLASSES)]


def dataset_folder(root: Path) -> Path:
    """``root/mnist_rotation_new``, or ``root`` itself when it already holds the files."""
    if (root / TRAIN_FILE).is_file() and not (root / FOLDER).is_dir():
        return root
    return root / FOLDER


def missing_files(folder: Path) -> list[str]:
    return [name for name in OFFICIAL_ROWS if not (folder / name).is_file()]


# ----------------------------------------------------------------------------- download
def download_file(url: str, path: Path) -> None:
    """Write the body of ``url`` to ``path`` (atomically: an interrupted download leaves no file)."""
    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    atomic_write(path, fetch)


def download_mnist_rot(root: Path, verify_checksums: bool) -> None:
    """Download ``mnist_rotation_new.zip`` into ``root`` (unless it is there), check its MD5 when
    ``verify_checksums``, and extract the two ``.amat`` files into ``root/mnist_rotation_new/``."""
    archive = root / ARCHIVE_NAME
    if not archive.is_file():
        try:
            root.mkdir(parents=True, exist_ok=True)
            download_file(ARCHIVE_URL, archive)
        except Exception as err:  # network or disk: say what to put where instead
            detail = " ".join(f"{type(err).__name__}: {err}".split())
            raise DataError(f"could not download {ARCHIVE_URL} to {archive} ({detail}); download it "
                            f"by hand and unzip it into {root / FOLDER}, or put {_FILES} there") from err
    if verify_checksums:
        actual = md5_of(archive)
        if actual != ARCHIVE_MD5:
            raise DataError(f"checksum mismatch for {archive}: md5 {actual}, expected {ARCHIVE_MD5}; "
                            f"delete it and rerun to download it again, or set data.verify_checksums=false")
    _extract(archive, root / FOLDER)


def _extract(archive: Path, folder: Path) -> None:
    """Copy the two ``.amat`` members of ``archive`` (at any depth) into ``folder``, atomically each."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = {Path(m).name: m for m in zipped.namelist() if not m.startswith("__MACOSX")}
            absent = [name for name in OFFICIAL_ROWS if name not in members]
            if absent:
                raise DataError(f"{archive} holds no {', '.join(absent)} (it holds {sorted(members)}); "
                                f"delete it and rerun with data.download=true")
            for name in OFFICIAL_ROWS:
                def copy(tmp: Path, member: str = members[name]) -> None:
                    with zipped.open(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                atomic_write(folder / name, copy)
    except (zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{archive} is not a readable zip archive ({err}); delete it and rerun "
                        f"with data.download=true") from err


# ----------------------------------------------------------------------------- parse and cache
def cache_path(root: Path, folder: Path) -> Path:
    """``<root>/.cache/mnist_rot-<key>.pt``; ``key`` hashes each file's name, size and mtime."""
    stamp = [f"v{_CACHE_VERSION}"]
    for name in OFFICIAL_ROWS:
        stat = (folder / name).stat()
        stamp.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return root / ".cache" / f"mnist_rot-{hashlib.sha256('|'.join(stamp).encode()).hexdigest()[:16]}.pt"


def _cached_arrays(root: Path, folder: Path) -> tuple[torch.Tensor, ...]:
    """``(train_x, train_y, test_x, test_y)`` from the cache, else parsed from the text files and cached
    (older caches of other file versions are deleted; a read-only root only loses the cache)."""
    path = cache_path(root, folder)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return state["train_x"], state["train_y"], state["test_x"], state["test_y"]
        except Exception as err:  # a corrupt cache is parsed again, never fatal
            warnings.warn(f"ignoring unreadable MNIST-rot cache {path}: {err}")
    arrays = (*read_amat(folder / TRAIN_FILE), *read_amat(folder / TEST_FILE))
    try:
        save_torch(path, dict(zip(("train_x", "train_y", "test_x", "test_y"), arrays)))
    except OSError as err:
        warnings.warn(f"could not write MNIST-rot cache {path}: {err}")
        return arrays
    for old in path.parent.glob("mnist_rot-*.pt"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    return arrays


def read_amat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``(N, 1, 28, 28)`` and labels int64 ``(N,)`` of one ``.amat`` file, every line
    checked: 785 numbers, pixels in [0, 1], an integral label in 0..9."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); {_REPLACE}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, not raises, on a file of blank lines
            table = np.loadtxt(path, dtype=np.float64, comments=None, ndmin=2)
    except (ValueError, UserWarning):
        table = None
    if table is None or table.shape[1] != _COLUMNS:
        raise DataError(f"{path}: {_malformed_line(path)}; {_REPLACE}")
    pixels, labels = table[:, :-1], table[:, -1]
    outside = ~((pixels >= 0) & (pixels <= 1))  # NaN too
    if outside.any():
        row, column = np.argwhere(outside)[0]
        value = float(pixels[row, column])
        raise DataError(f"{path}: line {_line_of_row(path, row)}: pixel {column + 1} is {value!r}, outside [0, 1]; "
                        f"{_REPLACE}")
    bad = ~((labels == np.round(labels)) & (labels >= 0) & (labels < NUM_CLASSES))
    if bad.any():
        row = int(np.argmax(bad))
        what = "not an integer" if labels[row] != np.round(labels[row]) else "out of range"
        raise DataError(f"{path}: line {_line_of_row(path, row)}: label {float(labels[row])!r} is {what}; expected "
                        f"the class 0..{NUM_CLASSES - 1} as the last number (e.g. 3.0); {_REPLACE}")
    images = torch.from_numpy(pixels.astype(np.float32)).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
    return images, torch.from_numpy(labels.astype(np.int64))


def _malformed_line(path: Path) -> str:
    """What is wrong with the first line that is not 785 numbers (read again line by line)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != _COLUMNS:
                return f"line {number} has {len(tokens)} numbers; expected {_COLUMNS} (784 pixels, then the label)"
            for column, token in enumerate(tokens, start=1):
                try:
                    float(token)
                except ValueError:
                    return f"line {number}: {token[:20]!r} (column {column}) is not a number"
    return "it holds no lines of numbers"


def _line_of_row(path: Path, row: int) -> int:
    """The 1-based line number of data row ``row`` (blank lines skipped, as the parser skips them)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = (number for number, line in enumerate(f, start=1) if line.strip())
        for _ in range(row):
            next(rows)
        return next(rows)


# ----------------------------------------------------------------------------- writer
def write_mnist_rot_folder(root: str | Path, n_train: int = 100, n_test: int = 50, seed: int = 0) -> Path:
    """Write ``n_train`` / ``n_test`` random images in [0, 1] (about half the pixels 0, as in MNIST) with
    labels ``i % 10`` as the two ``.amat`` files under ``root/mnist_rotation_new/`` (for tests, demos and
    smoke runs; read them with ``data.verify_checksums=false``); return that folder."""
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train={n_train} and n_test={n_test} must be >= 1")
    folder = Path(root) / FOLDER
    rng = np.random.default_rng(seed)
    for name, rows in ((TRAIN_FILE, n_train), (TEST_FILE, n_test)):
        pixels = rng.random((rows, _COLUMNS - 1)) * (rng.random((rows, _COLUMNS - 1)) < 0.5)
        table = np.concatenate([pixels, (np.arange(rows) % NUM_CLASSES)[:, None]], axis=1)
        atomic_write(folder / name, lambda tmp, table=table: np.savetxt(tmp, table, fmt="%.10e"))
    return folder
