"""Estimate the paper sweep's cost and ask before starting it on a machine without a GPU.

    python scripts/plan_sweep.py --data cifar10 --seeds 0,1,2 [--epochs 300] [--force]

Exit status 0: go on; 1: declined or refused (no GPU, no terminal, no FORCE=1); 2: bad arguments.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.report.plan import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
