"""Typed training configuration, built from a Hydra/OmegaConf config or a plain dict and
validated before any work is done.

Every bad value raises :class:`ValueError` with one line that names the value and the
valid choices, so ``scripts/train.py`` can print it without a traceback.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    "ConfigError", "ModelConfig", "GroupConfig", "AugmentConfig", "OptimConfig", "ScheduleConfig",
    "LoggerConfig", "TrainConfig", "load_config", "validate", "to_dict",
    "OPTIMIZERS", "SCHEDULES", "LOGGERS", "AUGMENTS", "WANDB_MODES", "AMP_DTYPES",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
LOGGERS = ("none", "csv", "wandb")
AUGMENTS = ("none", "crop_flip", "rot_flip")
WANDB_MODES = ("offline", "online", "disabled")
AMP_DTYPES = ("bfloat16", "float16")
AUTO_FLAGS = ("auto", True, False)


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the value and the choices."""


@dataclass
class ModelConfig:
    name: str = "rotmnist"
    width: float = 1.0
    overrides: dict = field(default_factory=dict)  # extra keyword arguments of build_model


@dataclass
class GroupConfig:
    name: str = "p4"


@dataclass
class AugmentConfig:
    name: str = "none"
    pad: int = 2


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9          # sgd only
    nesterov: bool = False         # sgd only
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)    # adam only


@dataclass
class ScheduleConfig:
    name: str = "constant"
    milestones: list = field(default_factory=list)  # epochs after which lr *= gamma ("step")
    gamma: float = 0.1
    warmup_epochs: float = 0.0     # linear warm-up from ~0 to lr, per step
    min_lr_factor: float = 0.0     # "cosine" ends at lr * min_lr_factor


@dataclass
class LoggerConfig:
    name: str = "csv"
    project: str = "gcnn-repro"
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None       # null: the sweep name in a multirun, none otherwise
    tags: list = field(default_factory=list)


@dataclass
class TrainConfig:
    data: dict = field(default_factory=dict)   # fields of repro.data.DataConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    group: GroupConfig = field(default_factory=GroupConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 1000
    device: str = "auto"
    deterministic: bool = False
    amp: Any = "auto"
    amp_dtype: str = "bfloat16"
    channels_last: Any = "auto"
    compile: bool = False
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    bn_recalibration: bool = True
    equivariance_images: int = 256
    progress: Any = "auto"
    sweep_name: str = "sweep"


_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(TrainConfig)
             if f.default_factory is not dataclasses.MISSING and f.name != "data"}


def _choice(key: str, value: Any, choices: tuple) -> None:
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ConfigError(f"{key}={value!r} is not valid; expected one of {list(choices)}")


def _build(cls: type, values: Mapping, prefix: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; expected one of {names}")
    return cls(**values)


def _plain(cfg: Any) -> dict:
    """A resolved plain dict from a DictConfig or a mapping (the ``hydra`` node dropped)."""
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items() if k != "hydra"}
    return out


def load_config(cfg: Any) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a DictConfig, a dict or a TrainConfig."""
    if isinstance(cfg, TrainConfig):
        config = cfg
    else:
        values = _plain(cfg)
        sections = {}
        for name, factory in _SECTIONS.items():
            sections[name] = _build(factory, values.pop(name, None) or {}, f"{name}.")
        data = values.pop("data", None) or {}
        config = _build(TrainConfig, values, "")
        for name, section in sections.items():
            setattr(config, name, section)
        config.data = dict(data)
    validate(config)
    from repro.data import DataConfig
    config.data = dataclasses.asdict(DataConfig(**config.data))  # every field, defaults filled in
    return config


def _positive_int(key: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} is not valid; expected an integer >= {minimum}")


def _non_negative(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key}={value!r} is not valid; expected a number >= 0")


def validate(config: TrainConfig) -> None:
    """Check every choice and range; raise ValueError naming the first bad value."""
    import gcnn
    import models
    from repro.data import DataConfig

    _choice("group", config.group.name, tuple(gcnn.GROUP_NAMES))
    _choice("model", config.model.name, tuple(models.list_models()))
    _choice("augment", config.augment.name, AUGMENTS)
    _choice("optim", config.optim.name, OPTIMIZERS)
    _choice("schedule", config.schedule.name, SCHEDULES)
    _choice("logger", config.logger.name, LOGGERS)
    _choice("logger.mode", config.logger.mode, WANDB_MODES)
    _choice("amp", config.amp, AUTO_FLAGS)
    _choice("amp_dtype", config.amp_dtype, AMP_DTYPES)
    _choice("channels_last", config.channels_last, AUTO_FLAGS)
    _choice("progress", config.progress, AUTO_FLAGS)
    _positive_int("epochs", config.epochs)
    _positive_int("batch_size", config.batch_size)
    _positive_int("eval_batch_size", config.eval_batch_size)
    _positive_int("seed", config.seed, minimum=0)
    _positive_int("equivariance_images", config.equivariance_images, minimum=0)
    _positive_int("augment.pad", config.augment.pad, minimum=0)
    if not (isinstance(config.model.width, (int, float)) and config.model.width > 0):
        raise ConfigError(f"model.width={config.model.width!r} is not valid; expected a number > 0")
    if not (isinstance(config.optim.lr, (int, float)) and config.optim.lr > 0):
        raise ConfigError(f"optim.lr={config.optim.lr!r} is not valid; expected a number > 0")
    _non_negative("optim.momentum", config.optim.momentum)
    _non_negative("optim.weight_decay", config.optim.weight_decay)
    _non_negative("schedule.warmup_epochs", config.schedule.warmup_epochs)
    _non_negative("schedule.gamma", config.schedule.gamma)
    _non_negative("label_smoothing", config.label_smoothing)
    if config.label_smoothing >= 1:
        raise ConfigError(f"label_smoothing={config.label_smoothing!r} is not valid; expected 0 <= x < 1")
    if config.grad_clip is not None and not (isinstance(config.grad_clip, (int, float))
                                             and config.grad_clip > 0):
        raise ConfigError(f"grad_clip={config.grad_clip!r} is not valid; expected null or a number > 0")
    milestones = list(config.schedule.milestones)
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) \
            or milestones != sorted(milestones):
        raise ConfigError(f"schedule.milestones={milestones!r} is not valid; "
                         "expected increasing epoch numbers >= 1")
    if not (config.device in ("auto", "cpu", "cuda") or str(config.device).startswith("cuda:")):
        raise ConfigError(f"device={config.device!r} is not valid; expected one of "
                         "['auto', 'cpu', 'cuda', 'cuda:N']")
    data_fields = [f.name for f in dataclasses.fields(DataConfig)]
    unknown = sorted(set(config.data) - set(data_fields))
    if unknown:
        raise ConfigError(f"unknown config key 'data.{unknown[0]}'; expected one of {data_fields}")
    try:
        DataConfig(**config.data).validate()
    except ValueError as error:
        raise ConfigError(str(error)) from None


def to_dict(config: TrainConfig) -> dict:
    """The full resolved config as a JSON-friendly dict."""
    out = dataclasses.asdict(config)
    out["optim"]["betas"] = list(out["optim"]["betas"])
    return out
