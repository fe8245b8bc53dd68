"""Why a run stops before its last epoch, as exceptions whose ``str()`` is the one line the user
sees and whose ``exit_code`` ``scripts/train.py`` exits with; and the signal handling that turns
Ctrl-C (SIGINT) and SIGTERM (SLURM's preemption and time limit) into a clean stop.

Exit codes: 0 finished; 2 bad input or a run folder in use; 3 diverged; 74 (``EX_IOERR``) the
environment failed, e.g. a full disk or quota; 130 Ctrl-C; 143 SIGTERM."""
from __future__ import annotations

import contextlib
import errno
import signal
import threading
from typing import Iterator

__all__ = ["EXIT_BAD_INPUT", "EXIT_DIVERGED", "EXIT_ENVIRONMENT", "RunStopped", "RunLocked", "Diverged",
           "DiskFull", "Interrupted", "StopSignal", "stop_on_signals", "NO_SPACE"]

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_ENVIRONMENT = 74  # sysexits.h EX_IOERR
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota


class RunStopped(Exception):
    """A run stopped for a reason the user can act on; ``str()`` is one line."""

    exit_code = 1


class RunLocked(RunStopped):
    """Another live process trains in this run folder."""

    exit_code = EXIT_BAD_INPUT


class Diverged(RunStopped):
    """The training loss became NaN or infinite; the run folder records where."""

    exit_code = EXIT_DIVERGED


class DiskFull(RunStopped):
    """A run file could not be written for lack of space; the files written before are intact."""

    exit_code = EXIT_ENVIRONMENT


class StopSignal(BaseException):
    """Raised in the main thread by the SIGTERM/SIGINT handler of :func:`stop_on_signals`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; the last finished epoch's checkpoint is intact. A
    ``KeyboardInterrupt``, so that no ``except Exception`` (a sweep's launcher) carries on past it."""

    def __init__(self, epoch: int, signum: int = signal.SIGINT) -> None:
        name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
        super().__init__(f"interrupted{name} at epoch {epoch}; rerun the same command to resume")
        self.epoch, self.signum, self.exit_code = epoch, signum, 128 + int(signum)


def _raise_stop(signum: int, frame: object) -> None:
    raise StopSignal(signum)


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`StopSignal` wherever the main thread is (within a
    step, so well inside SLURM's 30 s grace); the previous handlers are restored after. Outside the
    main thread (signals cannot be handled there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise_stop) for s in signums}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
