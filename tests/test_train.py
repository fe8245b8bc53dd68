"""The trainer in-process: configs and validation, schedules, the run record, resume,
BN recalibration and the measured equivariance error."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import models
from repro.train import ConfigError, compose_config, load_config, run
from repro.train.optim import lr_factor
from repro.train.config import ScheduleConfig
from repro.train.trainer import Trainer, global_batches

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
METRIC_KEYS = {"epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "epoch_time_s",
               "images_per_s"}
RESULT_KEYS = {"status", "model", "group", "augment", "data", "train_size", "seed", "epochs",
               "final_test_error", "best_test_error", "best_epoch", "final_train_loss", "params", "macs",
               "equivariance_error", "equivariance_group", "config", "git_commit", "torch_version",
               "device", "wall_time_s"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides for a run of a second or two: 50 rotated 8x8 digits, a 5-channel P4CNN."""
    return [f"data.root={tmp_path / 'data'}", "data.train_size=50", "data.image_size=8", "epochs=2",
            "batch_size=16", "model.width=0.5", "equivariance_images=32", "logger=none", *extra]


# ---------------------------------------------------------------- schedules
def test_step_schedule_divides_after_each_milestone_epoch():
    cfg = ScheduleConfig(name="step", milestones=[1, 3], gamma=0.1)
    factors = [lr_factor(cfg, step, steps_per_epoch=2, epochs=4) for step in range(8)]
    assert factors == [1, 1, 0.1, 0.1, 0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]


def test_cosine_schedule_and_warmup():
    cfg = ScheduleConfig(name="cosine", min_lr_factor=0.1)
    assert lr_factor(cfg, 0, 10, 4) == 1.0
    assert lr_factor(cfg, 20, 10, 4) == pytest.approx(0.55)
    assert lr_factor(cfg, 40, 10, 4) == pytest.approx(0.1)
    warm = ScheduleConfig(name="constant", warmup_epochs=0.5)
    assert [lr_factor(warm, s, 10, 4) for s in range(7)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]


def test_global_batches_keep_a_last_batch_only_if_every_rank_gets_an_image():
    order = torch.arange(10)
    assert [b.tolist() for b in global_batches(order, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(global_batches(order, 4, world_size=2)) == 3
    assert len(global_batches(order, 4, world_size=3)) == 2


# ---------------------------------------------------------------- configs
def test_default_config_is_the_cpu_demo():
    config = load_config(compose_config())
    assert (config.data["name"], config.model.name, config.group.name, config.augment.name) == \
        ("digits_rot", "rotmnist", "p4", "none")
    assert (config.optim.name, config.optim.lr, config.batch_size) == ("adam", 0.001, 128)
    assert config.logger.name == "csv" and config.device == "auto"


@pytest.mark.parametrize("overrides", [
    [],
    ["experiment=paper_allcnnc", "group=p4m", "augment=crop_flip"],
    ["experiment=paper_resnet44", "optim.lr=0.1", "seed=3"],
    ["group=z2", "optim=sgd", "schedule=cosine", "logger=wandb", "data=cifar100"],
])
def test_compose_without_hydra_matches_hydra(overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        expected = compose("train", overrides=overrides)
    expected = OmegaConf.to_container(expected, resolve=True)
    expected.pop("hydra", None)
    assert OmegaConf.to_container(compose_config(overrides), resolve=True) == expected


def test_paper_recipes():
    allcnnc = load_config(compose_config(["experiment=paper_allcnnc"]))
    assert (allcnnc.model.name, allcnnc.data["name"], allcnnc.optim.name, allcnnc.optim.lr,
            allcnnc.optim.momentum, allcnnc.optim.weight_decay, allcnnc.batch_size) == \
        ("allcnnc", "cifar10", "sgd", 0.01, 0.9, 0.001, 128)
    resnet = load_config(compose_config(["experiment=paper_resnet44", "group=p4m"]))
    assert (resnet.model.name, resnet.group.name, resnet.optim.lr, resnet.schedule.name,
            resnet.schedule.milestones, resnet.epochs) == ("resnet44", "p4m", 0.05, "step", [50, 100, 150], 300)
    assert load_config(compose_config(["experiment=paper_resnet26"])).model.name == "resnet26"


def test_every_trainer_yaml_says_where_its_values_come_from():
    owned = ["group", "model", "optim", "schedule", "logger", "experiment", "hydra"]
    for path in [p for name in owned for p in (CONFIG_DIR / name).rglob("*.yaml")] + [CONFIG_DIR / "train.yaml"]:
        text = path.read_text()
        assert text.lstrip().startswith("#"), f"{path} has no header comment"


@pytest.mark.parametrize("overrides, message", [
    (["group.name=p5"], "group='p5' is not valid; expected one of ['z2', 'p4', 'p4m']"),
    (["augment.name=rot"], "augment='rot' is not valid; expected one of ['none', 'crop_flip', 'rot_flip']"),
    (["epochs=-1"], "epochs=-1 is not valid; expected an integer >= 1"),
    (["epochs=0"], "epochs=0 is not valid"),
    (["batch_size=0"], "batch_size=0 is not valid"),
    (["model.name=vgg"], "model='vgg' is not valid; expected one of ['allcnnc', 'resnet44', 'resnet26', 'rotmnist']"),
    (["optim.name=rmsprop"], "optim='rmsprop' is not valid; expected one of ['sgd', 'adam']"),
    (["schedule.name=linear"], "schedule='linear' is not valid; expected one of ['constant', 'step', 'cosine']"),
    (["logger.name=tensorboard"], "logger='tensorboard' is not valid; expected one of ['none', 'csv', 'wandb']"),
    (["logger=wandb", "logger.mode=cloud"], "logger.mode='cloud' is not valid; expected one of ['offline', 'online', 'disabled']"),
    (["amp=maybe"], "amp='maybe' is not valid; expected one of ['auto', True, False]"),
    (["device=tpu"], "device='tpu' is not valid"),
    (["optim.lr=0"], "optim.lr=0 is not valid"),
    (["schedule.milestones=[30,10]"], "schedule.milestones=[30, 10] is not valid"),
    (["+epochz=3"], "unknown config key 'epochz'"),
    (["+optim.lr_decay=3"], "unknown config key 'optim.lr_decay'"),
    (["data=cifar10", "data.root=/nonexistent/cifar", "data.download=false"],
     "data.root='/nonexistent/cifar' does not exist and data.download=false"),
])
def test_bad_values_fail_with_one_line_naming_value_and_choices(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(compose_config(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_group_choice_names_the_choices():
    with pytest.raises(ConfigError, match=r"group='p5' is not valid; expected one of \['p4', 'p4m', 'z2'\]"):
        compose_config(["group=p5"])
    with pytest.raises(ConfigError, match=r"augment='rot' is not valid; expected one of \['crop_flip', 'none', 'rot_flip'\]"):
        compose_config(["augment=rot"])


def test_run_accepts_a_plain_dict(tmp_path):
    result = run({"data": {"name": "digits_rot", "root": str(tmp_path / "data"), "train_size": 20,
                           "image_size": 8},
                  "epochs": 1, "batch_size": 10, "model": {"width": 0.3}, "equivariance_images": 4,
                  "logger": {"name": "none"}}, run_dir=tmp_path / "run")
    assert result["status"] == "finished" and result["epochs"] == 1
    assert (tmp_path / "run" / "result.json").exists()


# ---------------------------------------------------------------- the run record
def test_run_writes_metrics_result_and_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run(compose_config(tiny(tmp_path, "logger=csv")), run_dir=run_dir)
    out = capsys.readouterr().out
    assert "epoch 2/2  train loss" in out and "img/s" in out

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(METRIC_KEYS <= set(row) for row in rows)
    assert all(0 <= row["test_error"] <= 100 and 0 <= row["train_error"] <= 100 for row in rows)
    assert (run_dir / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")

    saved = json.loads((run_dir / "result.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert RESULT_KEYS <= set(saved)
    assert saved["status"] == "finished" and saved["final_test_error"] == rows[-1]["test_error"]
    assert saved["best_test_error"] == min(row["test_error"] for row in rows)
    assert (saved["model"], saved["group"], saved["data"], saved["train_size"]) == ("rotmnist", "p4", "digits_rot", 50)
    model = models.build_model("rotmnist", "p4", 10, in_channels=1, width=0.5)
    assert saved["params"] == models.count_parameters(model)
    assert saved["equivariance_group"] == "p4"
    assert saved["equivariance_error"] < 1e-4  # p4 net on 8x8 inputs: invariant up to float32 round-off
    assert saved["config"]["model"]["width"] == 0.5 and saved["torch_version"] == torch.__version__
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["epoch"] == 2 and {"model", "optimizer", "scheduler", "scaler", "rng"} <= set(checkpoint)


def test_a_finished_run_is_not_redone(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=run_dir)
    stamp = (run_dir / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    again = run(compose_config(tiny(tmp_path, "epochs=1", "logger=csv")), run_dir=run_dir)
    assert "already finished" in capsys.readouterr().out
    assert again == json.loads(json.dumps(first))
    assert (run_dir / "result.json").stat().st_mtime_ns == stamp


def test_a_run_directory_refuses_a_different_config(tmp_path):
    run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="holds a run with a different config .*seed: 0 there, 1 now"):
        run(compose_config(tiny(tmp_path, "epochs=1", "seed=1")), run_dir=tmp_path / "run")


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    overrides = tiny(tmp_path, "epochs=3", "deterministic=true", "augment=crop_flip", "augment.pad=1")
    straight = run(compose_config(overrides), run_dir=tmp_path / "straight")

    original = Trainer.run_epoch

    def crash_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(overrides), run_dir=tmp_path / "resumed")
    monkeypatch.setattr(Trainer, "run_epoch", original)
    metrics = tmp_path / "resumed" / "metrics.jsonl"
    assert len(metrics.read_text().splitlines()) == 2 and not (tmp_path / "resumed" / "result.json").exists()
    with metrics.open("a") as f:  # a line of an epoch that died after its checkpoint must go
        f.write('{"epoch": 3, "train_loss": 0}\n')

    resumed = run(compose_config(overrides), run_dir=tmp_path / "resumed")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    straight_rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("epoch_time_s", "images_per_s")}  # noqa: E731
    assert [strip(r) for r in rows] == [strip(r) for r in straight_rows]
    for key in ("final_test_error", "final_train_loss", "best_test_error", "equivariance_error"):
        assert resumed[key] == straight[key]


# ---------------------------------------------------------------- pieces
def test_bn_recalibration_sets_running_stats_to_the_training_set_statistics(tmp_path):
    config = load_config(compose_config(tiny(tmp_path, "eval_batch_size=1000")))
    from repro.train import distributed

    trainer = Trainer(config, tmp_path / "run", distributed.setup("cpu"))
    trainer.load_data()
    trainer.build_model()
    first_bn = next(m for m in trainer.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    seen = []
    handle = first_bn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    trainer.recalibrate_batchnorm()
    handle.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 50  # one batch: the whole training set
    x = seen[0]
    dims = [0, *range(2, x.dim())]
    torch.testing.assert_close(first_bn.running_mean, x.mean(dims), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first_bn.running_var, x.var(dims, unbiased=True), rtol=1e-5, atol=1e-6)
    assert not trainer.module.training and first_bn.momentum == 0.1


def test_equivariance_is_measured_with_p4m_for_plain_cnns():
    from repro.train import equivariance_group, measure_equivariance

    assert [equivariance_group(g) for g in ("z2", "p4", "p4m")] == ["p4m", "p4", "p4m"]
    torch.manual_seed(0)
    images = torch.randn(6, 1, 8, 8)
    plain = models.build_model("rotmnist", "z2", 10, in_channels=1, width=0.5)
    p4m = models.build_model("rotmnist", "p4m", 10, in_channels=1, width=0.5)
    plain.train()
    assert measure_equivariance(plain, images, "p4m", batch_size=4) > 1e-3
    assert plain.training  # mode restored
    assert measure_equivariance(p4m, images, "p4m", batch_size=4) < 1e-5
    assert math.isnan(measure_equivariance(p4m, images[:0], "p4m"))


def test_every_training_option_runs_and_the_validation_split_is_reported(tmp_path):
    result = run(compose_config(tiny(
        tmp_path, "optim=sgd", "optim.lr=0.05", "optim.nesterov=true", "optim.weight_decay=0.001",
        "schedule=cosine", "schedule.warmup_epochs=0.5", "amp=true", "channels_last=true", "grad_clip=1.0",
        "label_smoothing=0.1", "bn_recalibration=false", "data.val_size=20", "progress=true")),
        run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 50 images in batches of 16 -> 4 steps per epoch; warm-up over the first 2 steps
    assert rows[0]["lr"] == pytest.approx(0.05 * 0.5)
    assert rows[1]["lr"] == pytest.approx(0.05 * 0.5)  # half-way down the cosine
    assert all(math.isfinite(row["train_loss"]) and "val_error" in row for row in rows)
    assert result["best_val_epoch"] in (1, 2) and "test_error_at_best_val" in result


def test_a_deterministic_run_leaves_the_global_torch_flags_as_they_were(tmp_path):
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    run(compose_config(tiny(tmp_path, "epochs=1", "deterministic=true")), run_dir=tmp_path / "run")
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_hydra_overrides_are_ignored_by_compose_config():
    assert compose_config(["hydra/launcher=joblib", "hydra.run.dir=x", "seed=2"]).seed == 2


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """torch.compile (about a minute of compilation on a CPU) changes speed, not results."""
    eager = run(compose_config(tiny(tmp_path)), run_dir=tmp_path / "eager")
    compiled = run(compose_config(tiny(tmp_path, "compile=true")), run_dir=tmp_path / "compiled")
    assert compiled["final_train_loss"] == pytest.approx(eager["final_train_loss"], rel=1e-4)
    assert compiled["final_test_error"] == pytest.approx(eager["final_test_error"], abs=100 / 797 + 1e-9)
