"""Train one model (or a sweep with -m) as configured under configs/; see the README.

    python scripts/train.py                                  # rotated digits, p4, CPU
    python scripts/train.py -m group=z2,p4,p4m seed=0,1,2    # a sweep
    python scripts/train.py experiment=paper_allcnnc group=p4m augment=crop_flip
    torchrun --nproc_per_node=2 scripts/train.py ...         # DistributedDataParallel

Rerunning the same command resumes the run in the same folder; a finished run is not redone.
A bad config value or a data problem prints one line ``error: ...`` and exits with status 2
(HYDRA_FULL_ERROR=1 shows the traceback instead).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import repro.train  # noqa: E402  (also registers the run-folder resolvers)
from repro.data import DataError  # noqa: E402


def refuse(error: Exception, run_dir: Path) -> None:
    """One line on stderr and exit 2; a folder this command created is removed again."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        result = repro.train.run(cfg, run_dir=run_dir, multirun=hydra_cfg.mode == RunMode.MULTIRUN)
    except (repro.train.ConfigError, DataError) as error:
        refuse(error, run_dir)
    return result["final_test_error"]


if __name__ == "__main__":
    main()
