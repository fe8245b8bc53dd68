"""Configs: Hydra composition in code, the one place that validates, options as YAML files
(``optim=adamw`` is one file), schedules and run identity."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from repro.data import DataConfig, build_data
from repro.train import ConfigError, compose_config, config_groups, load_config, to_dict
from repro.train.config import CONFIG_DIR, recorded_config
from repro.train.identity import identity_diff, identity_hash, identity_items
from repro.train.optim import build_optimizer, build_scheduler

REPO = Path(__file__).resolve().parents[1]


def factors(schedule: dict, steps: int, steps_per_epoch: int, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, steps_per_epoch, epochs)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


# ---------------------------------------------------------------- composition
def test_default_config_is_the_cpu_demo():
    config = load_config(compose_config())
    assert (config.data.name, config.model.name, config.group.name, config.augment["name"]) == \
        ("digits_rot", "rotmnist", "p4", "none")
    assert (config.optim["name"], config.optim["lr"], config.batch_size) == ("adam", 0.001, 128)
    assert config.logger["name"] == "csv" and config.device == "auto"


def test_compose_config_is_hydras_compose():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = ["experiment=paper_resnet44", "group=p4m", "optim.lr=0.1", "seed=3"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        expected = OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
    assert OmegaConf.to_container(compose_config(overrides), resolve=True) == expected


@pytest.mark.parametrize("plain", [{}, {"optim": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "step"}}])
def test_a_plain_dict_is_the_same_experiment_as_its_hydra_composition(plain):
    from repro.train.config import TrainConfig
    overrides = [f"{section}={v['name']}" for section, v in plain.items()] + ["optim.lr=0.1"] * ("optim" in plain)
    composed = to_dict(load_config(compose_config(overrides)))
    for config in (plain, TrainConfig(**{k: dict(v) for k, v in plain.items()})):
        assert identity_diff(to_dict(load_config(config)), composed) == {}


def test_paper_recipes():
    allcnnc = load_config(compose_config(["experiment=paper_allcnnc"]))
    assert (allcnnc.model.name, allcnnc.data.name, allcnnc.optim["name"], allcnnc.optim["lr"],
            allcnnc.optim["momentum"], allcnnc.optim["weight_decay"], allcnnc.batch_size) == \
        ("allcnnc", "cifar10", "sgd", 0.01, 0.9, 0.001, 128)
    resnet = load_config(compose_config(["experiment=paper_resnet44", "group=p4m"]))
    assert (resnet.model.name, resnet.group.name, resnet.optim["lr"], resnet.schedule["name"],
            resnet.schedule["milestones"], resnet.epochs) == ("resnet44", "p4m", 0.05, "step", [50, 100, 150], 300)
    assert load_config(compose_config(["experiment=paper_resnet26"])).model.name == "resnet26"


def test_choices_are_the_yaml_files_of_each_config_group():
    groups = config_groups()
    assert groups["optim"] == ["adam", "adamw", "sgd"]
    assert groups["augment"] == ["crop_flip", "none", "reference_rotation", "rot_flip"]
    for group, choices in groups.items():
        for choice in choices:
            text = (CONFIG_DIR / group / f"{choice}.yaml").read_text()
            assert text.lstrip().startswith("#"), f"{group}/{choice}.yaml has no header comment"
            if group not in ("experiment",):
                assert f"name: {choice}\n" in text, f"{group}/{choice}.yaml must say name: {choice}"


def test_no_option_file_holds_a_key_its_option_ignores():
    for group in ("optim", "schedule", "augment", "logger", "data"):
        for choice in config_groups()[group]:
            text = (CONFIG_DIR / group / f"{choice}.yaml").read_text().lower()
            assert "unused" not in text and "ignored" not in text, f"{group}/{choice}.yaml"
    for choice in config_groups()["optim"]:
        load_config(compose_config([f"optim={choice}"]))  # every key is an argument of its _target_


# ---------------------------------------------------------------- adding an option
def test_adamw_is_one_yaml_file_and_builds_decoupled_weight_decay():
    config = load_config(compose_config(["optim=adamw", "optim.weight_decay=0.05"]))
    optimizer = build_optimizer([torch.nn.Parameter(torch.ones(3))], config.optim)
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
    tracked = subprocess.run(["git", "ls-files", "*.py", "Makefile"], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    mentions = [p for p in tracked if not p.startswith("tests/") and (REPO / p).exists()
                and "adamw" in (REPO / p).read_text().lower()]
    assert mentions == [], f"adamw should need no code: {mentions}"


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("overrides, message", [
    (["group.name=p5"], "group='p5' is not valid; expected one of ['z2', 'p4', 'p4m']"),
    (["augment.name=rot"], "augment='rot' is not valid; expected one of "
                           "['crop_flip', 'none', 'reference_rotation', 'rot_flip']"),
    (["epochs=-1"], "epochs=-1 is not valid; expected an integer >= 1"),
    (["epochs=0"], "epochs=0 is not valid"),
    (["batch_size=0"], "batch_size=0 is not valid"),
    (["steps_per_epoch=0"], "steps_per_epoch=0 is not valid; expected an integer >= 1"),
    (["model.name=vgg"], "model='vgg' is not valid; expected one of ['allcnnc', 'resnet44', 'resnet26', 'rotmnist', "
     "'rotmnist_cnn', 'rotmnist_cnn_rp']"),
    (["optim.name=rmsprop"], "optim='rmsprop' is not valid; expected one of ['adam', 'adamw', 'sgd']"),
    (["schedule.name=linear"], "schedule='linear' is not valid; expected one of ['constant', 'cosine', 'step']"),
    (["logger.name=tensorboard"], "logger='tensorboard' is not valid; expected one of ['csv', 'none', 'wandb']"),
    (["logger=wandb", "logger.mode=cloud"], "logger.mode='cloud' is not valid; expected one of ['offline', 'online', 'disabled']"),
    (["amp=maybe"], "amp='maybe' is not valid; expected one of ['auto', True, False]"),
    (["compile=maybe"], "compile='maybe' is not valid; expected one of ['auto', True, False]"),
    (["device=tpu"], "device='tpu' is not valid"),
    (["device=cuda:x"], "device='cuda:x' is not valid"),
    (["optim.lr=0"], "optim.lr=0 is not valid; expected a number > 0"),
    (["optim=adamw", "optim.weight_decay=-1"], "optim.weight_decay=-1 is not valid; expected a number >= 0"),
    (["schedule=step", "schedule.milestones=[30,10]"], "schedule.milestones=[30, 10] is not valid"),
    (["+epochz=3"], "unknown config key 'epochz'"),
    (["+optim.momentum=0.9"], "unknown config key 'optim.momentum' for optim=adam"),
    (["optim.momentum=0.9"], "Could not override 'optim.momentum'"),
    (["group=p5"], "group='p5' is not valid; expected one of ['p4', 'p4m', 'z2']"),
    (["augment=rot"], "augment='rot' is not valid; expected one of "
                      "['crop_flip', 'none', 'reference_rotation', 'rot_flip']"),
    (["data=cifar10", "data.root=/nonexistent/cifar", "data.download=false"],
     "data.root='/nonexistent/cifar' does not exist and data.download=false"),
])
def test_bad_values_fail_with_one_line_naming_value_and_choices(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(compose_config(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_run_options_keep_the_cli_hydra_keys_out():
    assert compose_config(["seed=2"]).seed == 2
    assert "hydra" not in compose_config([])


# ---------------------------------------------------------------- schedules
def test_step_schedule_divides_after_each_milestone_epoch():
    schedule = {"name": "step", "_target_": "repro.train.schedules.step_decay", "milestones": [1, 3], "gamma": 0.1}
    assert factors(schedule, 8, steps_per_epoch=2, epochs=4) == \
        [1, 1, 0.1, 0.1, 0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]


def test_cosine_schedule_and_warmup():
    cosine = {"name": "cosine", "_target_": "repro.train.schedules.cosine", "min_lr_factor": 0.1}
    lrs = factors(cosine, 41, 10, 4)
    assert lrs[0] == 1.0 and lrs[20] == pytest.approx(0.55) and lrs[40] == pytest.approx(0.1)
    warm = {"name": "constant", "_target_": "repro.train.schedules.constant", "warmup_epochs": 0.5}
    assert factors(warm, 7, 10, 4) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


# ---------------------------------------------------------------- identity
def test_identity_leaves_out_location_keys_only():
    base = to_dict(load_config(compose_config(["data.root=/a"])))
    moved = to_dict(load_config(compose_config(["data.root=/b", "logger=none", "progress=true", "device=cpu"])))
    assert identity_hash(base) == identity_hash(moved) and identity_diff(base, moved) == {}
    changed = to_dict(load_config(compose_config(["optim.lr=0.01"])))
    assert identity_diff(base, changed) == {"optim.lr": (0.001, 0.01)}
    assert identity_hash(base) != identity_hash(changed)
    items = identity_items(base)
    assert "data.root" not in items and "logger.name" not in items and items["seed"] == 0
    assert items["data.preprocess"] == "standardize" and "optim.betas" in items


def test_mnist_rot_format_files_unchecked_are_named_by_their_bytes(tmp_path, tiny_mnist_rot):
    """With data.verify_checksums=false (subsets, your own files) two MNIST-rot-format folders are two
    experiments and a moved folder is the same one; checked, the official files are named by data.name."""
    def identity(root: Path, *extra: str) -> str:
        overrides = ["data=mnist_rot", f"data.root={root}", *extra]
        return identity_hash(recorded_config(load_config(compose_config(overrides))))

    unchecked = "data.verify_checksums=false"
    tiny_mnist_rot(root=tmp_path / "a", seed=0)
    tiny_mnist_rot(root=tmp_path / "b", seed=1)
    a = identity(tmp_path / "a", unchecked)
    assert a != identity(tmp_path / "b", unchecked)
    shutil.move(tmp_path / "a", tmp_path / "moved")
    assert identity(tmp_path / "moved", unchecked) == a
    shutil.move(tmp_path / "moved" / "mnist_rotation_new", tmp_path / "flat")  # the files in data.root itself
    assert identity(tmp_path / "flat", unchecked) == a
    assert identity(tmp_path / "flat") == identity(tmp_path / "b") == identity(tmp_path / "missing", unchecked)


def test_data_config_is_typed_and_validated_once(monkeypatch):
    """``TrainConfig.data`` is a DataConfig, validated once by load_config; build_data trusts it."""
    checks = []
    validate_data = DataConfig.validate
    monkeypatch.setattr(DataConfig, "validate", lambda self: checks.append(self.name) or validate_data(self))
    config = load_config({"data": {"name": "digits_rot", "train_size": 50}})
    assert isinstance(config.data, DataConfig) and config.data.train_size == 50
    assert len(build_data(config.data).train_y) == 50
    assert checks == ["digits_rot"]


@pytest.mark.parametrize("data, classes", [({"name": "cifar100"}, 100), ({"name": "cifar10"}, 10),
                                           ({"name": "cifar_folder", "format": "cifar100"}, 100),
                                           ({"name": "digits_rot"}, 10)])
def test_data_config_knows_its_class_count(data, classes):
    assert DataConfig(**data).num_classes == classes
