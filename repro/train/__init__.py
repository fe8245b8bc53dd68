"""The experiment runner: one trainer for every model, configs composed by Hydra from ``configs/``,
checkpoint/resume, loggers and DistributedDataParallel. ``run`` also takes a plain dict, and
importing this package needs neither Hydra nor wandb.

>>> from repro.train import compose_config, run
>>> result = run(compose_config(["group=p4m", "epochs=2"]), run_dir="runs/demo")
"""
from .config import ConfigError, TrainConfig, compose_config, config_groups, load_config, to_dict, validate
from .measure import equivariance_group, measure_equivariance
from .run_folder import RunFileWarning, load_metrics, load_result
from .stops import Diverged, DiskFull, Interrupted, RunLocked, RunStopped
from .trainer import Trainer, run

__all__ = ["run", "Trainer", "TrainConfig", "ConfigError", "load_config", "validate", "to_dict", "compose_config",
           "config_groups", "load_result", "load_metrics", "RunFileWarning", "equivariance_group",
           "measure_equivariance", "RunStopped", "RunLocked", "Diverged", "DiskFull", "Interrupted"]
