"""``DataError``: a problem with the data on disk or with the requested splits.

Every message is one line that names the file or the config value and says what
to do. ``scripts/train.py`` prints it as ``error: <message>`` and exits with
code 2, like a config error; ``DataError`` is a ``ValueError``, so code that
catches ``ValueError`` keeps working.
"""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data set that cannot be used as configured (missing, corrupt or malformed
    files, labels out of range, a split larger than the data, ...)."""
