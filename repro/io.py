"""Atomic file writes: a crash or a kill leaves the old file or the new one, never half of one; a
failed write (a full disk) raises ``OSError`` naming the file, and leaves the old one as it was.
A new file gets the mode a plain ``open(path, "w")`` would give it (``0666`` minus the umask),
so colleagues on a shared machine can read results, checkpoints and caches."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["atomic_write", "write_text", "write_json", "save_torch"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a new temporary file beside ``path``, fsync it, then rename it
    over ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        # created with 0666 so that the umask applies (tempfile.mkstemp would force 0600)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:  # e.g. a full disk (ENOSPC): name the file being written, not its temporary
        tmp.unlink(missing_ok=True)
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path``."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # through Python's file: a full disk raises OSError (ENOSPC), not torch's own error
            torch.save(obj, f)

    return atomic_write(path, save)
