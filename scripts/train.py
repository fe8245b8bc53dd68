"""Train one model (or a sweep with -m) as configured under configs/; see the README.

    python scripts/train.py                                  # rotated digits, p4, CPU
    python scripts/train.py -m group=z2,p4,p4m seed=0,1,2    # a sweep
    torchrun --nproc_per_node=2 scripts/train.py ...         # DistributedDataParallel

Rerunning a command resumes its run folder; a finished run is not redone. Every early stop prints
one line and exits with its code (repro/train/stops.py): 2 a bad config value, a data problem or a
run folder in use; 3 diverged; 74 a full disk or quota; 130 Ctrl-C; 143 SIGTERM
(HYDRA_FULL_ERROR=1: the traceback). In a sweep (-m) a job that stops for any reason but Ctrl-C or
SIGTERM prints its line and the sweep goes on; the command then exits with that job's code.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import repro.train  # also registers the run-folder resolvers
from repro.data import DataError
from repro.train.stops import EXIT_BAD_INPUT, Interrupted, RunStopped

STOPPED_JOBS: list[int] = []  # exit codes of the jobs of this process's sweep that stopped early


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir, multirun = Path(hydra_cfg.runtime.output_dir), hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return repro.train.run(cfg, run_dir=run_dir, multirun=multirun)["final_test_error"]
    except Interrupted as stop:  # the whole command stops, a sweep too
        print(stop, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except (repro.train.ConfigError, DataError, RunStopped) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if run_dir.is_dir() and not any(run_dir.iterdir()):  # the empty folder Hydra made for this command
            run_dir.rmdir()
        print(f"error: {error}", file=sys.stderr, flush=True)
        code = getattr(error, "exit_code", EXIT_BAD_INPUT)
        if not multirun:
            sys.exit(code)
        STOPPED_JOBS.append(code)  # the sweep goes on with its other jobs
        return None


if __name__ == "__main__":
    main()
    if STOPPED_JOBS:
        print(f"error: {len(STOPPED_JOBS)} job(s) of the sweep stopped early (lines above)", file=sys.stderr)
        sys.exit(STOPPED_JOBS[0])
