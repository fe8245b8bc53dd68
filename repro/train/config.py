"""The training configuration: composed by Hydra from ``configs/``, checked here, in one place.

``configs/`` is the single source of every setting and of every choice: the options of a
config group are its YAML files (:func:`config_groups`). A section whose options build an
object (``optim``, ``schedule``) names it with ``_target_``, and every other key of that
file is a keyword argument of the target, so adding an option is one YAML
file. :func:`load_config` turns a composed config (or a plain dict) into a
:class:`TrainConfig` and validates it; every bad value raises :class:`ConfigError` with one
line naming the key, the value and what is expected.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from gcnn.validation import check_choice, check_int, check_number, invalid

__all__ = ["ConfigError", "ModelConfig", "GroupConfig", "TrainConfig", "CONFIG_DIR", "config_groups",
           "load_config", "validate", "to_dict", "resolve_target", "build_option", "check_config"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
AUTO_FLAGS = ("auto", True, False)
AMP_DTYPES = ("bfloat16", "float16")
WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the value and the choices."""


def config_groups(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """``{group: [choices]}``: the YAML stems of every config group folder (``hydra`` aside)."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(Path(config_dir).iterdir()) if d.is_dir() and d.name != "hydra"}


@dataclass
class ModelConfig:
    name: str = "rotmnist"
    width: float = 1.0
    overrides: dict = field(default_factory=dict)  # extra keyword arguments of models.build_model


@dataclass
class GroupConfig:
    name: str = "p4"


@dataclass
class TrainConfig:
    """Every setting of a run. ``data``: the fields of :class:`repro.data.DataConfig`;
    ``augment``, ``optim``, ``schedule``, ``logger``: the chosen option's YAML (``name``
    plus that option's own keys)."""

    data: dict = field(default_factory=dict)
    augment: dict = field(default_factory=lambda: {"name": "none"})
    model: ModelConfig = field(default_factory=ModelConfig)
    group: GroupConfig = field(default_factory=GroupConfig)
    optim: dict = field(default_factory=lambda: {"name": "adam", "_target_": "torch.optim.Adam", "lr": 1e-3})
    schedule: dict = field(default_factory=lambda: {"name": "constant",
                                                    "_target_": "repro.train.schedules.constant"})
    logger: dict = field(default_factory=lambda: {"name": "csv", "_target_": "repro.train.loggers.CsvLogger"})
    seed: int = 0
    epochs: int = 30
    steps_per_epoch: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 1000
    device: str = "auto"
    deterministic: bool = False
    amp: Any = "auto"
    amp_dtype: str = "bfloat16"
    channels_last: Any = False
    compile: bool = False
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    bn_recalibration: bool = True
    equivariance_images: int = 256
    robustness: bool = True
    progress: Any = "auto"
    sweep_name: str = "sweep"


_DATACLASS_SECTIONS = {"model": ModelConfig, "group": GroupConfig}


def _plain(cfg: Any) -> dict:
    """A resolved plain dict from a DictConfig or a mapping (any ``hydra`` node dropped)."""
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # plain dicts work without omegaconf (a bare GPU machine)
        pass
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items() if k != "hydra"}


def _known_keys(cls: type, values: Mapping, prefix: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; expected one of {names}")


def _with_option_defaults(section: str, values: Mapping[str, Any]) -> dict:
    """A plain dict's ``{"name": "sgd", "lr": 0.1}`` on top of ``configs/<section>/sgd.yaml``
    (what Hydra's composition would have given), so plain-dict configs need no Hydra."""
    import yaml
    path = CONFIG_DIR / section / f"{values.get('name')}.yaml"
    if "_target_" in values or not path.exists():
        return dict(values)
    return {**(yaml.safe_load(path.read_text()) or {}), **values}


def load_config(cfg: Any) -> TrainConfig:
    """A validated :class:`TrainConfig` from a composed DictConfig, a dict or a TrainConfig;
    missing keys take the defaults above, ``data`` the defaults of ``DataConfig``, and an
    option given by ``name`` alone the keys of its YAML."""
    if isinstance(cfg, TrainConfig):
        config = dataclasses.replace(cfg)
    else:
        values = _plain(cfg)
        _known_keys(TrainConfig, values, "")
        for section in RUNTIME_ARGUMENTS:
            if section in values:
                values[section] = _with_option_defaults(section, values[section] or {})
        for name, cls in _DATACLASS_SECTIONS.items():
            section = values.get(name) or {}
            _known_keys(cls, section, f"{name}.")
            values[name] = cls(**section)
        config = TrainConfig(**values)
    validate(config)
    from repro.data import DataConfig
    config.data = dataclasses.asdict(DataConfig(**config.data))  # every field, defaults filled in
    return config


# ---------------------------------------------------------------- checks
def check_config(check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a :mod:`gcnn.validation` check, re-raising its message as a ConfigError."""
    try:
        check(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def resolve_target(path: str, key: str) -> Callable[..., Any]:
    """The callable named by a dotted ``_target_`` path, e.g. ``torch.optim.SGD``."""
    module_name, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{key}._target_={path!r} is not valid; expected an importable "
                          "callable such as 'torch.optim.SGD'") from None


# Range checks by key name, applied to every option's keys wherever they appear, so a new
# option file under configs/ is checked without code.
_OPTION_KEY_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lr": lambda k, v: check_number(k, v, 0, strict=True),
    "momentum": lambda k, v: check_number(k, v, 0),
    "weight_decay": lambda k, v: check_number(k, v, 0),
    "gamma": lambda k, v: check_number(k, v, 0),
    "warmup_epochs": lambda k, v: check_number(k, v, 0),
    "min_lr_factor": lambda k, v: check_number(k, v, 0),
    "pad": lambda k, v: check_int(k, v, 0),
    "milestones": lambda k, v: _check_milestones(k, v),
}


def _check_milestones(key: str, value: Any) -> None:
    milestones = list(value)
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) \
            or milestones != sorted(milestones):
        raise invalid(key, milestones, "increasing epoch numbers >= 1")


# What the trainer passes to each section's builder at run time (never set in a YAML).
RUNTIME_ARGUMENTS = {"augment": ("name",), "optim": ("params",), "schedule": ("steps_per_epoch", "epochs"),
                     "logger": ("run_dir", "config", "run_name", "default_group", "default_tags")}


def _option_builder(section: str, values: Mapping[str, Any]) -> Callable[..., Any]:
    if "_target_" in values:
        return resolve_target(values["_target_"], section)
    if section == "augment":  # augmentations are functions chosen by name, not objects
        from repro.data import build_augment
        return build_augment
    raise ConfigError(f"{section}={values.get('name')!r} has no _target_; expected one in "
                      f"configs/{section}/{values.get('name')}.yaml")


def _check_option(section: str, values: Mapping[str, Any]) -> None:
    """``name`` is a YAML of ``configs/<section>/``; every other key is a keyword argument
    of the option's builder (its ``_target_``) and passes its range check."""
    check_config(check_choice, section, values.get("name"), config_groups()[section])
    builder = _option_builder(section, values)
    keys = [k for k in values if k not in ("name", "_target_")]
    accepted = [p for p in inspect.signature(builder).parameters if p not in RUNTIME_ARGUMENTS[section]]
    unknown = [k for k in keys if k not in accepted]
    if unknown:
        raise ConfigError(f"unknown config key '{section}.{unknown[0]}' for {section}="
                          f"{values['name']}; expected one of {accepted}")
    for key in keys:
        if key in _OPTION_KEY_CHECKS:
            check_config(_OPTION_KEY_CHECKS[key], f"{section}.{key}", values[key])


def build_option(section: str, values: Mapping[str, Any], **runtime: Any) -> Any:
    """Call the option's builder with its YAML keys and the trainer's ``runtime`` arguments,
    e.g. ``build_option("optim", config.optim, params=model.parameters())``."""
    kwargs = {k: v for k, v in values.items() if k not in ("name", "_target_")}
    if section == "augment":
        kwargs["name"] = values["name"]
    return _option_builder(section, values)(**runtime, **kwargs)


def validate(config: TrainConfig) -> None:
    """Check every choice and range; raise :class:`ConfigError` naming the first bad value."""
    import gcnn
    import models
    from repro.data import DataConfig

    check_config(check_choice, "group", config.group.name, gcnn.GROUP_NAMES)
    check_config(check_choice, "model", config.model.name, models.list_models())
    for section in RUNTIME_ARGUMENTS:
        _check_option(section, getattr(config, section))
    if "mode" in config.logger:
        check_config(check_choice, "logger.mode", config.logger["mode"], WANDB_MODES)
    for key in ("amp", "channels_last", "progress"):
        check_config(check_choice, key, getattr(config, key), AUTO_FLAGS)
    check_config(check_choice, "amp_dtype", config.amp_dtype, AMP_DTYPES)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        check_config(check_int, key, getattr(config, key), 1)
    for key in ("seed", "equivariance_images"):
        check_config(check_int, key, getattr(config, key), 0)
    if config.steps_per_epoch is not None:
        check_config(check_int, "steps_per_epoch", config.steps_per_epoch, 1)
    check_config(check_number, "model.width", config.model.width, 0, strict=True)
    check_config(check_number, "label_smoothing", config.label_smoothing, 0, below=1)
    if config.grad_clip is not None:
        check_config(check_number, "grad_clip", config.grad_clip, 0, strict=True)
    for key in ("deterministic", "compile", "bn_recalibration", "robustness"):
        check_config(check_choice, key, getattr(config, key), (True, False))
    if not (config.device in ("auto", "cpu", "cuda") or str(config.device).startswith("cuda:")):
        raise ConfigError(f"device={config.device!r} is not valid; expected one of "
                          "['auto', 'cpu', 'cuda', 'cuda:N']")
    _known_keys(DataConfig, config.data, "data.")
    try:
        DataConfig(**config.data).validate()
    except ValueError as error:
        raise ConfigError(str(error)) from None


def to_dict(config: TrainConfig) -> dict:
    """The full resolved config as a JSON-friendly dict (what ``result.json`` records)."""
    out = dataclasses.asdict(config)
    for section in ("optim", "schedule", "augment", "logger"):
        out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in out[section].items()}
    return out
