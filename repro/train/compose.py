"""Compose the training config in code with Hydra's own compose API, exactly as
``scripts/train.py`` does on the command line (for tests, notebooks and the benchmark).

>>> cfg = compose_config(["experiment=paper_allcnnc", "group=p4m", "epochs=5"])
>>> repro.train.run(cfg, run_dir="runs/try")

Also registers the resolvers that ``configs/train.yaml`` uses for the run folder:
``${run_name:...}`` (readable overrides) and ``${identity:}`` (the run's identity hash).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from gcnn.validation import check_choice

from .config import CONFIG_DIR, ConfigError, check_config, config_groups, load_config
from .identity import identity_hash, recorded_config

__all__ = ["compose_config", "PRIMARY"]

PRIMARY = "train"


def _run_name(override_dirname: str) -> str:
    """Run-folder name from Hydra's ``override_dirname``: ``default`` when empty, no slashes."""
    return override_dirname.replace("/", "_") or "default"


def _identity(*, _root_: Any) -> str:
    """``${identity:}``: the identity hash of the composed config (``invalid`` when the
    config does not validate: ``scripts/train.py`` then refuses it before any work)."""
    from omegaconf import OmegaConf
    values = {k: OmegaConf.to_container(_root_[k], resolve=True) if OmegaConf.is_config(_root_[k])
              else _root_[k] for k in _root_ if k != "hydra"}
    try:
        return identity_hash(recorded_config(load_config(values)))
    except ValueError:  # ConfigError or DataError: refused with one line before any work
        return "invalid"


try:
    from omegaconf import OmegaConf
    OmegaConf.register_new_resolver("run_name", _run_name, replace=True)
    OmegaConf.register_new_resolver("identity", _identity, replace=True)
except ImportError:  # plain-dict configs still work without omegaconf: see repro.train.run
    pass


def _check_choices(overrides: Sequence[str], config_dir: Path) -> None:
    """``group=p5``: one line naming the choice and the YAML files that exist."""
    groups = config_groups(config_dir)
    for item in overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and key in groups and value not in ("null", "") and "," not in value:
            check_config(check_choice, key, value, groups[key])


def compose_config(overrides: Sequence[str] = (), config_dir: str | Path = CONFIG_DIR) -> Any:
    """The composed ``configs/train.yaml`` with ``overrides`` (a DictConfig, resolved on
    access; no ``hydra`` node), e.g. ``["group=p4m", "experiment=paper_resnet44", "optim.lr=0.1"]``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    config_dir = Path(config_dir).resolve()
    _check_choices(overrides, config_dir)
    try:
        if GlobalHydra.instance().is_initialized():  # inside a @hydra.main app: same config tree
            return compose(PRIMARY, overrides=list(overrides))
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name=PRIMARY):
            return compose(PRIMARY, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(" ".join(str(error).split())) from None
