"""The training configuration: composed by Hydra from ``configs/``, checked here, in one place.
The choices of a config group are its YAML files; an option that builds an object (``optim``,
``schedule``, ``logger``) names it with ``_target_``, and its other keys are the target's keyword
arguments. Also registers the run-folder resolvers ``${run_name:...}`` and ``${identity:}``."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gcnn.validation import check_choice, check_int, check_number, invalid
from repro.data import DataConfig
from repro.device import AMP_DTYPES, AUTO_FLAGS, check_device_name

from .identity import data_fingerprint, identity_hash

try:
    from omegaconf import OmegaConf
except ImportError:  # plain-dict configs work without Hydra and omegaconf (a bare GPU machine)
    OmegaConf = None

__all__ = ["ConfigError", "ModelConfig", "GroupConfig", "TrainConfig", "CONFIG_DIR", "config_groups",
           "compose_config", "load_config", "validate", "to_dict", "recorded_config", "build_option"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
WANDB_MODES = ("offline", "online", "disabled")
# What the trainer passes to each section's builder at run time (never set in a YAML).
RUNTIME_ARGUMENTS = {"augment": ("name",), "optim": ("params",), "schedule": ("steps_per_epoch", "epochs"),
                     "logger": ("run_dir", "config", "run_name", "default_group", "default_tags")}
# Option keys checked by name wherever they appear, so a new option file is checked without code.
NONNEGATIVE_KEYS = ("momentum", "weight_decay", "gamma", "warmup_epochs", "min_lr_factor")


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the value and the choices."""


def config_groups() -> dict[str, list[str]]:
    """``{group: [choices]}``: the YAML stems of every config group folder (``hydra`` aside)."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(CONFIG_DIR.iterdir()) if d.is_dir() and d.name != "hydra"}


def compose_config(overrides: Sequence[str] = ()) -> Any:
    """``configs/train.yaml`` composed with ``overrides`` by Hydra's own compose API, as
    ``scripts/train.py`` does (a DictConfig without the ``hydra`` node), e.g.
    ``compose_config(["experiment=paper_resnet44", "group=p4m", "optim.lr=0.1"])``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    groups = config_groups()
    try:
        for item in overrides:  # group=p5: one line naming the YAML files that exist
            key, sep, value = item.lstrip("+~").partition("=")
            if sep and key in groups and value not in ("null", "") and "," not in value:
                check_choice(key, value, groups[key])
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
            return compose("train", overrides=list(overrides))
    except (ValueError, HydraException, OmegaConfBaseException) as error:
        raise ConfigError(" ".join(str(error).split())) from None


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
    """Every setting of a run. ``data``: what :func:`repro.data.build_data` loads; ``augment``,
    ``optim``, ``schedule``, ``logger``: the chosen option's YAML (``name`` plus its own keys)."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: dict = field(default_factory=lambda: {"name": "none"})
    model: ModelConfig = field(default_factory=ModelConfig)
    group: GroupConfig = field(default_factory=GroupConfig)
    optim: dict = field(default_factory=lambda: {"name": "adam"})  # the other keys: from its YAML
    schedule: dict = field(default_factory=lambda: {"name": "constant"})
    logger: dict = field(default_factory=lambda: {"name": "csv"})
    seed: int = 0
    epochs: int = 30
    eval_every: int = 1          # evaluate every N epochs and at the last
    steps_per_epoch: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 1000
    device: str = "auto"
    deterministic: bool = False
    amp: Any = "auto"
    amp_dtype: str = "bfloat16"
    channels_last: Any = "auto"
    compile: Any = "auto"
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    bn_recalibration: bool = True
    equivariance_images: int = 256
    robustness: bool = True
    progress: Any = "auto"
    sweep_name: str = "sweep"


def _known_keys(cls: type, values: Mapping, prefix: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; expected one of {names}")


def load_config(cfg: Any) -> TrainConfig:
    """A validated :class:`TrainConfig` from a composed config, a plain dict or a TrainConfig.
    Missing keys take the defaults above (``data``: those of ``DataConfig``); an option given by
    ``name`` alone (``{"optim": {"name": "sgd", "lr": 0.1}}``) takes the other keys of its YAML."""
    if isinstance(cfg, TrainConfig):
        cfg = dataclasses.asdict(cfg)
    values = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf is not None and OmegaConf.is_config(v)
              else v for k, v in cfg.items() if k != "hydra"}
    _known_keys(TrainConfig, values, "")
    defaults = TrainConfig()
    for section in RUNTIME_ARGUMENTS:  # given or default, an option named alone gets what Hydra would give
        option = values.get(section) or getattr(defaults, section)
        path = CONFIG_DIR / section / f"{option.get('name')}.yaml"
        if "_target_" not in option and path.exists():
            import yaml
            option = {**(yaml.safe_load(path.read_text()) or {}), **option}
        values[section] = option
    for name, cls in (("model", ModelConfig), ("group", GroupConfig), ("data", DataConfig)):
        _known_keys(cls, values.get(name) or {}, f"{name}.")
        values[name] = cls(**(values.get(name) or {}))
    config = TrainConfig(**values)
    validate(config)
    return config


def _option_builder(section: str, values: Mapping[str, Any]) -> Callable[..., Any]:
    """The option's ``_target_`` (augmentations: :func:`repro.data.build_augment`, by name)."""
    if section == "augment":
        from repro.data import build_augment
        return build_augment
    module_name, _, attr = str(values.get("_target_")).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{section}._target_={values.get('_target_')!r} is not valid; expected an "
                          "importable callable such as 'torch.optim.SGD'") from None


def build_option(section: str, values: Mapping[str, Any], **runtime: Any) -> Any:
    """Call the option's builder with its YAML keys and the trainer's ``runtime`` arguments,
    e.g. ``build_option("optim", config.optim, params=model.parameters())``."""
    kwargs = {k: v for k, v in values.items() if k not in ("name", "_target_")}
    if section == "augment":
        kwargs["name"] = values["name"]
    return _option_builder(section, values)(**runtime, **kwargs)


def _check_option(section: str, values: Mapping[str, Any]) -> None:
    """``name`` is a YAML of ``configs/<section>/``; every other key is a keyword argument of the
    option's builder and passes the range check of its name."""
    check_choice(section, values.get("name"), config_groups()[section])
    keys = [k for k in values if k not in ("name", "_target_")]
    accepted = [p for p in inspect.signature(_option_builder(section, values)).parameters
                if p not in RUNTIME_ARGUMENTS[section]]
    unknown = [k for k in keys if k not in accepted]
    if unknown:
        raise ConfigError(f"unknown config key '{section}.{unknown[0]}' for {section}="
                          f"{values['name']}; expected one of {accepted}")
    for key in keys:
        name, value = f"{section}.{key}", values[key]
        if key == "lr":
            check_number(name, value, 0, strict=True)
        elif key in NONNEGATIVE_KEYS:
            check_number(name, value, 0)
        elif key == "pad":
            check_int(name, value, 0)
        elif key == "mode":
            check_choice(name, value, WANDB_MODES)
        elif key == "milestones" and (list(value) != sorted(value) or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in value)):
            raise invalid(name, list(value), "increasing epoch numbers >= 1")


def validate(config: TrainConfig) -> None:
    """Check every choice and range; raise :class:`ConfigError` naming the first bad value."""
    import gcnn
    import models

    try:
        check_choice("group", config.group.name, gcnn.GROUP_NAMES)
        check_choice("model", config.model.name, models.list_models())
        for section in RUNTIME_ARGUMENTS:
            _check_option(section, getattr(config, section))
        for key in ("amp", "channels_last", "compile", "progress"):
            check_choice(key, getattr(config, key), AUTO_FLAGS)
        check_choice("amp_dtype", config.amp_dtype, AMP_DTYPES)
        for key in ("epochs", "eval_every", "batch_size", "eval_batch_size"):
            check_int(key, getattr(config, key), 1)
        for key in ("seed", "equivariance_images"):
            check_int(key, getattr(config, key), 0)
        if config.steps_per_epoch is not None:
            check_int("steps_per_epoch", config.steps_per_epoch, 1)
        check_number("model.width", config.model.width, 0, strict=True)
        check_number("label_smoothing", config.label_smoothing, 0, below=1)
        if config.grad_clip is not None:
            check_number("grad_clip", config.grad_clip, 0, strict=True)
        for key in ("deterministic", "bn_recalibration", "robustness"):
            check_choice(key, getattr(config, key), (True, False))
        check_device_name(config.device)
        config.data.validate()  # the one validation of the data config (build_data trusts a DataConfig)
    except ValueError as error:  # gcnn.validation's and the data's errors, as one config error
        raise ConfigError(str(error)) from None


def to_dict(config: TrainConfig) -> dict:
    """The full resolved config as a JSON-friendly dict."""
    return dataclasses.asdict(config)


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """What a run records and is identified by: :func:`to_dict` of ``config`` plus, for a user's own
    files (``cifar_folder``; ``mnist_rot`` with ``verify_checksums`` off), ``data.content``
    (:func:`repro.train.identity.data_fingerprint`), so two folders are two experiments; the other
    data sets are named exactly by ``data.name``."""
    out = to_dict(config)
    content = data_fingerprint(out["data"])
    if content is not None:
        out["data"]["content"] = content
    return out


def _identity(*, _root_: Any) -> str:
    """``${identity:}``: the identity hash of the composed config (``invalid`` when it does not
    validate: ``scripts/train.py`` then refuses it with one line before any work)."""
    try:
        return identity_hash(recorded_config(load_config({k: _root_[k] for k in _root_ if k != "hydra"})))
    except ValueError:  # ConfigError or DataError
        return "invalid"


if OmegaConf is not None:
    OmegaConf.register_new_resolver("run_name", lambda dirname: dirname.replace("/", "_") or "default", replace=True)
    OmegaConf.register_new_resolver("identity", _identity, replace=True)
