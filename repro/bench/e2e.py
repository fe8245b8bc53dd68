"""End-to-end wall time of project commands (``make demo``, ``make test``), really run."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

__all__ = ["E2E_COMMANDS", "time_command"]

# The demo writes into a fresh temporary folder: a finished multirun/demo would resume
# instantly and time nothing.
E2E_COMMANDS: dict[str, list[str]] = {
    "demo": ["make", "demo", "DEMO_DIR={tmp}/multirun", "DEMO_OUT={tmp}/results"],
    "test": ["make", "test"],
}


def time_command(command: list[str], cwd: str | Path = ".", timeout_s: float | None = None) -> dict:
    """Run ``command`` in ``cwd``; ``{"command", "wall_s", "returncode", "tail"}`` (last output lines).

    A command still running after ``timeout_s`` is killed and reported with
    ``returncode`` ``None`` and ``timed_out`` true.
    """
    if not command:
        raise ValueError("time_command needs a non-empty command, got []")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
        returncode, output, timed_out = done.returncode, done.stdout + done.stderr, False
    except subprocess.TimeoutExpired as exc:
        returncode, timed_out = None, True
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    wall = time.perf_counter() - start
    tail = "\n".join(output.strip().splitlines()[-5:])
    return {"command": " ".join(command), "wall_s": wall, "returncode": returncode,
            "timed_out": timed_out, "tail": tail}
