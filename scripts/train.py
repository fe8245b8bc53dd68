"""Train one model (or a sweep with -m) as configured under configs/; see the README.

    python scripts/train.py                                  # rotated digits, p4, CPU
    python scripts/train.py -m group=z2,p4,p4m seed=0,1,2    # a sweep
    torchrun --nproc_per_node=2 scripts/train.py ...         # DistributedDataParallel

Rerunning a command resumes its run folder; a finished run is not redone. A bad config value or
a data problem prints one line ``error: ...`` and exits 2 (HYDRA_FULL_ERROR=1: the traceback).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import repro.train  # noqa: E402  (also registers the run-folder resolvers)
from repro.data import DataError  # noqa: E402


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return repro.train.run(cfg, run_dir=run_dir, multirun=hydra_cfg.mode == RunMode.MULTIRUN)["final_test_error"]
    except (repro.train.ConfigError, DataError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if run_dir.is_dir() and not any(run_dir.iterdir()):  # the empty folder Hydra made for this command
            run_dir.rmdir()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
