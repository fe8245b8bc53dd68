"""``DataError``: a data problem, in one line naming the file or ``data.*`` key and what to do."""


class DataError(ValueError):
    """Missing, corrupt or malformed data files, or a split the data cannot give. ``scripts/train.py``
    prints it as ``error: <message>`` and exits with code 2; a ``ValueError``, like a config error."""
