"""Compose the training config from ``configs/`` with OmegaConf alone, for machines
without Hydra: the same defaults list, config groups, ``experiment=`` recipes
(``# @package _global_`` with ``override /group: choice`` defaults) and
``key=value`` overrides as ``scripts/train.py``, minus Hydra's own ``hydra:`` node.

>>> cfg = compose_config(["experiment=paper_allcnnc", "epochs=5"])
>>> repro.train.run(cfg, run_dir="runs/try")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

try:
    from omegaconf import DictConfig, OmegaConf
except ImportError:  # plain-dict configs still work: see repro.train.run
    DictConfig = OmegaConf = None  # type: ignore[assignment, misc]

from .config import ConfigError

__all__ = ["CONFIG_DIR", "compose_config", "config_groups"]

def _run_name(override_dirname: str) -> str:
    """Run-folder name from Hydra's ``override_dirname``: ``default`` when empty, no slashes."""
    return override_dirname.replace("/", "_") or "default"


# ${run_name:...} in configs/train.yaml (hydra.run.dir); registered on import of repro.train.
if OmegaConf is not None:
    OmegaConf.register_new_resolver("run_name", _run_name, replace=True)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
PRIMARY = "train"


def config_groups(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """``{group: [choices]}`` for every folder of YAML files under ``config_dir``."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(config_dir.iterdir()) if d.is_dir() and d.name != "hydra"}


def _load(config_dir: Path, group: str, choice: str) -> "DictConfig":
    path = config_dir / group / f"{choice}.yaml"
    if not path.exists():
        raise ConfigError(f"{group}={choice!r} is not valid; expected one of "
                         f"{config_groups(config_dir).get(group, [])}")
    return OmegaConf.load(path)


def _defaults(cfg: "DictConfig") -> list[Any]:
    items = cfg.pop("defaults", None)
    return list(OmegaConf.to_container(items)) if items is not None else []


def _split_overrides(overrides: Sequence[str], groups: dict[str, list[str]]) -> tuple[dict[str, str], list[str]]:
    choices, values = {}, []
    for item in overrides:
        key, sep, value = item.lstrip("+").partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not valid; expected key=value")
        if key.startswith("hydra"):  # launcher and run-directory settings: Hydra's business
            continue
        if key in groups:
            choices[key] = value
        else:
            values.append(f"{key}={value}")
    return choices, values


def compose_config(overrides: Sequence[str] = (), config_dir: str | Path = CONFIG_DIR) -> "DictConfig":
    """The resolved-on-access config of ``configs/train.yaml`` with ``overrides``
    (e.g. ``["group=p4m", "experiment=paper_resnet44", "optim.lr=0.1"]``)."""
    if OmegaConf is None:
        raise ImportError("compose_config needs omegaconf (pip install omegaconf); "
                          "repro.train.run also takes a plain dict")
    config_dir = Path(config_dir)
    groups = config_groups(config_dir)
    primary = OmegaConf.load(config_dir / f"{PRIMARY}.yaml")
    defaults = _defaults(primary)
    primary.pop("hydra", None)
    cli_choices, values = _split_overrides(overrides, groups)

    choices: dict[str, str | None] = {}
    for item in defaults:
        if isinstance(item, dict):
            (key, choice), = item.items()
            key = key.removeprefix("optional ").strip()
            if not key.startswith(("override ", "hydra")):
                choices[key] = choice
    experiment_name = cli_choices.pop("experiment", choices.pop("experiment", None))
    experiment = None
    if experiment_name:
        experiment = _load(config_dir, "experiment", experiment_name)
        for item in _defaults(experiment):
            (key, choice), = item.items()
            choices[key.removeprefix("override").strip().lstrip("/")] = choice
    choices.update(cli_choices)

    merged = OmegaConf.create()
    for group, choice in choices.items():
        if choice is not None:
            merged = OmegaConf.merge(merged, {group: _load(config_dir, group, choice)})
    merged = OmegaConf.merge(merged, primary)
    if experiment is not None:
        merged = OmegaConf.merge(merged, experiment)
    if values:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(values))
    return merged
