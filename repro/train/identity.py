"""Run identity: every resolved config key that can change a run's numbers, as dotted keys
(``optim.lr``, ``data.train_size``); only :data:`LOCATION_KEYS` are left out, and the keys of
:data:`NEW_KEY_DEFAULTS` at their default. The run folder's
name ends with :func:`identity_hash`, resume checks it, and the report averages only runs whose
identities differ in ``seed`` alone."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from repro.data import mnist_rot
from repro.data.cifar_format import cifar_layout

__all__ = ["LOCATION_KEYS", "NEW_KEY_DEFAULTS", "flatten", "identity_items", "identity_hash", "identity_diff",
           "folder_fingerprint", "data_fingerprint"]

# Keys (or whole sections) that never change a number: where the data lives and whether it is
# fetched or checked, the device name, logging, progress display and the sweep's folder name.
LOCATION_KEYS = ("data.root", "data.download", "data.verify_checksums", "device", "logger",
                 "progress", "sweep_name")
# Keys added after runs were recorded, left out at the value every earlier run had, so that adding
# a key changes no existing run's identity (a run with another value is another experiment).
NEW_KEY_DEFAULTS = {"eval_every": 1}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def identity_items(config: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys and values of ``config`` that define the experiment (sorted)."""
    return {k: v for k, v in sorted(flatten(config).items())
            if not any(k == loc or k.startswith(loc + ".") for loc in LOCATION_KEYS)
            and not (k in NEW_KEY_DEFAULTS and v == NEW_KEY_DEFAULTS[k])}


def identity_hash(config: Mapping[str, Any], length: int = 8) -> str:
    """Short hex hash of :func:`identity_items` (stable across processes and machines)."""
    text = json.dumps(identity_items(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every identity key that differs."""
    a, b = identity_items(old), identity_items(new)
    missing = object()
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)}


def folder_fingerprint(folder: str | Path, names: Iterable[str] | None = None) -> str:
    """Short hash of the names (relative to ``folder``) and bytes of its files ``names``, or of every file
    below it (hidden entries such as ``.cache`` skipped): the identity of a user's own data, which its path
    is not."""
    folder = Path(folder)
    files = (sorted(folder / name for name in names) if names is not None else
             sorted(p for p in folder.rglob("*") if p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts)))
    return _hash_files(folder, tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def data_fingerprint(data: Mapping[str, Any]) -> str | None:
    """``data.content`` of a recorded data config: :func:`folder_fingerprint` of a user's own files, so two
    folders are two experiments. ``cifar_folder``: every file in its layout's sub-folder (or ``root``);
    ``mnist_rot`` with ``verify_checksums`` off (subsets, your own files): its two ``.amat`` files. None for
    data named exactly by ``data.name`` (the official files, checked), and while the files are absent."""
    root = Path(str(data["root"]))
    if data["name"] == "cifar_folder" and root.is_dir():
        folder = root / cifar_layout(data["format"]).folder
        return folder_fingerprint(folder if folder.is_dir() else root)
    if data["name"] == "mnist_rot" and not data["verify_checksums"]:
        folder = mnist_rot.dataset_folder(root)
        names = (mnist_rot.TRAIN_FILE, mnist_rot.TEST_FILE)
        return None if mnist_rot.missing_files(folder) else folder_fingerprint(folder, names)
    return None


@functools.lru_cache(maxsize=8)
def _hash_files(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(str(Path(name).relative_to(folder)).encode())
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]

