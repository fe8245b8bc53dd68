"""Loggers: none, csv and wandb (offline, no network), and importing the trainer without wandb."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro.train import compose_config, load_config, run
from repro.train.config import build_option
from repro.train.loggers import CsvLogger, Logger

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = {"config": {}, "run_name": "x", "default_group": None, "default_tags": []}


def test_none_and_csv_loggers_are_built_from_their_yaml(tmp_path):
    def logger(name: str) -> Logger:
        return build_option("logger", load_config(compose_config([f"logger={name}"])).logger,
                            run_dir=tmp_path, **RUNTIME)
    assert type(logger("none")) is Logger
    logger = logger("csv")
    assert isinstance(logger, CsvLogger)
    history = [{"epoch": 1, "train_loss": 0.5, "test_error": 12.5}]
    logger.log_epoch(history)
    history.append({"epoch": 2, "train_loss": 0.25, "test_error": 10.0})
    logger.log_epoch(history)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows == [{"epoch": "1", "train_loss": "0.5", "test_error": "12.5"},
                    {"epoch": "2", "train_loss": "0.25", "test_error": "10.0"}]


def test_trainer_runs_a_plain_dict_config_without_wandb_hydra_or_omegaconf(tmp_path):
    code = f"""
import sys
for name in ("wandb", "hydra", "omegaconf"):
    sys.modules[name] = None  # import fails, as on a machine without them
import torch
torch.set_num_threads(1)
import repro.train
from repro.train.config import build_option
result = repro.train.run({{"data": {{"name": "digits_rot", "root": {str(tmp_path / 'data')!r},
                                    "train_size": 20, "image_size": 8}},
                          "epochs": 1, "batch_size": 10, "model": {{"width": 0.3}},
                          "equivariance_images": 4}}, run_dir={str(tmp_path / 'run')!r})
assert result["status"] == "finished"
try:
    build_option("logger", {{"name": "wandb", "_target_": "repro.train.loggers.WandbLogger"}},
                 run_dir={str(tmp_path)!r}, config={{}}, run_name="x", default_group=None, default_tags=[])
except ImportError:
    print("wandb needed only for logger=wandb")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wandb needed only for logger=wandb" in proc.stdout
    assert (tmp_path / "run" / "metrics.csv").exists()  # the default logger is csv


def test_wandb_offline_writes_run_files_and_resume_keeps_the_run_id(tmp_path, monkeypatch, wandb_offline):
    from repro.train.trainer import Trainer

    overrides = [f"data.root={tmp_path / 'data'}", "data.train_size=20", "data.image_size=8", "epochs=2",
                 "batch_size=10", "model.width=0.3", "equivariance_images=4", "logger=wandb",
                 "logger.tags=[demo]", "sweep_name=my_sweep"]
    run_dir = tmp_path / "run"
    original = Trainer.run_epoch

    def crash_in_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(Trainer, "run_epoch", crash_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            run(compose_config(overrides), run_dir=run_dir, multirun=True)
        first_id = (run_dir / "wandb_id.txt").read_text().strip()
        monkeypatch.setattr(Trainer, "run_epoch", original)
        result = run(compose_config(overrides), run_dir=run_dir, multirun=True)
    finally:
        torch.set_num_threads(threads)
    assert result["status"] == "finished"
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert run_id == first_id
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    # one folder per start, named by the start second (two starts within a second share one)
    assert 1 <= len(offline) <= 2 and all(d.name.endswith(f"-{run_id}") for d in offline)
    records = b"".join((d / f"run-{run_id}.wandb").read_bytes() for d in offline)
    # wandb 0.31 has no Python reader for its record files; the protobuf strings are plain bytes
    for text in ("my_sweep", "p4", "rotmnist", "digits_rot", "demo",   # group and tags
                 "bn_recalibration",                                  # the resolved config
                 "test_error", "images_per_s",                        # per-epoch metrics
                 "final_test_error", "equivariance_error"):           # the final summary
        assert text.encode() in records, text
