"""The trainer in-process: configs and validation, schedules, the run record, resume,
BN recalibration and the measured equivariance error."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import models
from repro.data.digits import rotate_images
from repro.train import ConfigError, compose_config, load_config, run
from repro.train.distributed import setup as dist_setup
from repro.train.measure import P4M_ELEMENT_NAMES
from repro.train.reproducible import epoch_batches, global_batches
from repro.train.run_folder import (CHECKPOINT, METRIC_KEYS, PREVIOUS, RESULT_COMMON_KEYS, RESULT_OPTIONAL_KEYS,
                                    RESULT_REQUIRED_KEYS, load_result)
from repro.train.trainer import Trainer, setup


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides for a run of a second or two: 50 rotated 8x8 digits, a 5-channel P4CNN."""
    return [f"data.root={tmp_path / 'data'}", "data.train_size=50", "data.image_size=8", "epochs=2",
            "batch_size=16", "model.width=0.5", "equivariance_images=32", "logger=none", *extra]


# ---------------------------------------------------------------- batches
def test_global_batches_keep_a_last_batch_only_if_every_rank_gets_an_image():
    order = torch.arange(10)
    assert [b.tolist() for b in global_batches(order, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(global_batches(order, 4, world_size=2)) == 3
    assert len(global_batches(order, 4, world_size=3)) == 2
    assert len(global_batches(order, 4, drop_last=True)) == 2  # static shapes under torch.compile


def test_steps_per_epoch_gives_every_training_set_size_the_same_budget():
    small = [epoch_batches(0, e, 10, 4, steps_per_epoch=8) for e in (1, 2)]
    large = [epoch_batches(0, e, 100, 4, steps_per_epoch=8) for e in (1, 2)]
    assert [len(b) for b in small + large] == [8, 8, 8, 8]
    # passes run on across epochs: every image once per pass of 3 batches (4 + 4 + 2)
    steps = [b.tolist() for b in small[0] + small[1]]
    assert sorted(sum(steps[0:3], [])) == list(range(10)) and sorted(sum(steps[3:6], [])) == list(range(10))
    # without steps_per_epoch an epoch is one pass, drawn as before
    assert [b.tolist() for b in epoch_batches(0, 2, 10, 4, None)] == steps[3:6]


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
    assert all(set(METRIC_KEYS) <= set(row) for row in rows)
    assert all(0 <= row["test_error"] <= 100 and 0 <= row["train_error"] <= 100 for row in rows)
    assert (run_dir / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")

    saved = json.loads((run_dir / "result.json").read_text())
    assert saved == json.loads(json.dumps(result))
    # the writer and run_folder's key lists (what the readers rely on) cannot drift apart
    assert {*RESULT_REQUIRED_KEYS, *RESULT_OPTIONAL_KEYS, *RESULT_COMMON_KEYS, "torch_version"} <= set(saved)
    assert saved["status"] == "finished" and saved["final_test_error"] == rows[-1]["test_error"]
    assert saved["best_test_error"] == min(row["test_error"] for row in rows)
    assert (saved["model"], saved["group"], saved["data"], saved["train_size"]) == ("rotmnist", "p4", "digits_rot", 50)
    model = models.build_model("rotmnist", "p4", 10, in_channels=1, width=0.5)
    assert saved["params"] == models.count_parameters(model)
    assert saved["equivariance_group"] == "p4"
    assert saved["equivariance_error"] < 1e-4  # p4 net on 8x8 inputs: invariant up to float32 round-off
    assert saved["config"]["model"]["width"] == 0.5 and saved["torch_version"] == torch.__version__
    assert saved["steps"] == 2 * 4 and len(saved["identity"]) == 8
    assert set(saved["robustness"]["p4m"]) == set(P4M_ELEMENT_NAMES)
    assert len(saved["robustness"]["rotation"]) == 24  # digits: every 15 degrees
    # a p4 net is invariant to quarter turns: the same error on r, r2, r3 as on e (up to float32 ties)
    p4m = saved["robustness"]["p4m"]
    assert max(abs(p4m[g] - p4m["e"]) for g in ("r", "r2", "r3")) <= 100 * 2 / 797
    assert saved["robustness"]["rotation"]["0"] == pytest.approx(p4m["e"])
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=False)
    previous = torch.load(run_dir / PREVIOUS, weights_only=False)
    assert (checkpoint["epoch"], previous["epoch"]) == (2, 1)
    assert {"model", "optimizer", "scheduler", "scaler", "config", "history"} <= set(checkpoint)


def test_run_fields_are_the_keys_run_folder_declares_for_every_record(tmp_path):
    trainer = Trainer(load_config(compose_config(tiny(tmp_path))), tmp_path / "run", dist_setup("cpu"))
    assert tuple(trainer.run_fields()) == RESULT_COMMON_KEYS


def test_a_finished_run_is_not_redone(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=run_dir)
    stamp = (run_dir / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    again = run(compose_config(tiny(tmp_path, "epochs=1", "logger=csv")), run_dir=run_dir)
    assert "already finished" in capsys.readouterr().out
    assert again == json.loads(json.dumps(first))
    assert (run_dir / "result.json").stat().st_mtime_ns == stamp


def test_a_run_folder_refuses_a_different_experiment_naming_the_keys(tmp_path):
    run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(ConfigError) as info:
        run(compose_config(tiny(tmp_path, "epochs=1", "seed=1", "optim.lr=0.01")), run_dir=tmp_path / "run")
    assert "holds a different experiment (optim.lr=0.001 there, 0.01 now, seed=0 there, 1 now)" in str(info.value)
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_moving_the_data_does_not_block_resume(tmp_path, monkeypatch):
    overrides = tiny(tmp_path, "epochs=2")
    original = Trainer.run_epoch
    monkeypatch.setattr(Trainer, "run_epoch", lambda self, epoch: (
        original(self, epoch) if epoch < 2 else (_ for _ in ()).throw(KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(overrides), run_dir=tmp_path / "run")
    monkeypatch.setattr(Trainer, "run_epoch", original)
    moved = [o for o in overrides if not o.startswith("data.root")] + [
        f"data.root={tmp_path / 'elsewhere'}", "logger=csv", "progress=false"]
    result = run(compose_config(moved), run_dir=tmp_path / "run")
    assert result["status"] == "finished" and result["epochs"] == 2


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, damage):
    overrides = tiny(tmp_path, "epochs=3", "deterministic=true")
    straight = run(compose_config(overrides), run_dir=tmp_path / "straight")
    crashed = tmp_path / "crashed"
    run(compose_config(tiny(tmp_path, "epochs=3", "deterministic=true")), run_dir=crashed)
    (crashed / "result.json").unlink()
    # keep epoch 2 as the previous checkpoint and break the latest (epoch 3)
    latest = crashed / CHECKPOINT
    data = latest.read_bytes()
    latest.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint"}[damage])
    capsys.readouterr()
    resumed = run(compose_config(overrides), run_dir=crashed)
    err = capsys.readouterr().err
    assert f"warning: {latest} is unreadable" in err and "resuming from checkpoint.prev.pt (epoch 2)" in err
    assert resumed["final_test_error"] == straight["final_test_error"]
    # neither usable: one line naming the file and what to do
    for name in (CHECKPOINT, PREVIOUS):
        (crashed / name).write_bytes(b"")
    (crashed / "result.json").unlink()
    with pytest.raises(ConfigError, match=r"checkpoint.pt is unreadable .* no earlier checkpoint is usable; delete"):
        run(compose_config(overrides), run_dir=crashed)


def test_a_corrupt_result_is_redone_from_the_last_checkpoint(tmp_path, capsys):
    first = run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=tmp_path / "run")
    (tmp_path / "run" / "result.json").write_text('{"status": "fini')
    capsys.readouterr()
    again = run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=tmp_path / "run")
    err = capsys.readouterr().err
    assert "result.json: corrupt result.json (" in err and "; redoing the final evaluation" in err
    assert len(err.strip().splitlines()) == 1
    assert again["final_test_error"] == first["final_test_error"]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "finished"


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
def test_a_run_that_dies_in_its_first_epoch_is_listed_by_the_report(tmp_path, monkeypatch):
    from repro.report import collect_runs

    def die(self, epoch):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Trainer, "run_epoch", die)
    with pytest.raises(RuntimeError):
        run(compose_config(tiny(tmp_path, "group=p4m", "seed=3")), run_dir=tmp_path / "runs" / "died")
    excluded = collect_runs([tmp_path / "runs"]).excluded.iloc[0]
    assert (excluded["group"], excluded["seed"]) == ("p4m", 3)
    assert "before its first epoch ended" in excluded["reason"]


def test_bn_recalibration_sets_running_stats_to_the_training_set_statistics(tmp_path):
    config = load_config(compose_config(tiny(tmp_path, "eval_batch_size=1000")))

    trainer = Trainer(config, tmp_path / "run", dist_setup("cpu"))
    trainer.state = setup(config, trainer.ctx)
    first_bn = next(m for m in trainer.state.module.modules()
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    seen = []
    handle = first_bn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    trainer.recalibrate_batchnorm()
    handle.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 50  # one batch: the whole training set
    x = seen[0]
    dims = [0, *range(2, x.dim())]
    torch.testing.assert_close(first_bn.running_mean, x.mean(dims), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first_bn.running_var, x.var(dims, unbiased=True), rtol=1e-5, atol=1e-6)
    assert not trainer.state.module.training and first_bn.momentum == 0.1


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


def test_robustness_rotations_turn_counter_clockwise_like_rot90():
    """The robustness rotations (repro.data.digits.rotate_images) turn the way p4's ``r`` does."""
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)

    def angles(degrees: float) -> torch.Tensor:
        return torch.full((2,), math.radians(degrees), dtype=torch.float64)

    torch.testing.assert_close(rotate_images(x, angles(90)), torch.rot90(x, 1, (-2, -1)))
    torch.testing.assert_close(rotate_images(x, angles(0)), x)
    assert not torch.allclose(rotate_images(x, angles(90)), torch.rot90(x, -1, (-2, -1)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("extra", [[], ["channels_last=true"], ["amp=false", "deterministic=true"]])
def test_the_cuda_path_trains_and_measures_equivariance_without_tf32(tmp_path, extra):
    """Data on the device, bf16 autocast (default on CUDA), channels_last; the measured
    equivariance error must not drown in TF32 round-off."""
    result = run(compose_config(tiny(tmp_path, "device=cuda", *extra)), run_dir=tmp_path / "run")
    assert result["device"].startswith("cuda") and math.isfinite(result["final_train_loss"])
    assert result["equivariance_error"] < 1e-4
    assert set(result["robustness"]["p4m"]) == set(P4M_ELEMENT_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["channels_last=false", "channels_last=true"])  # CUDA's default is both on
def test_compiled_training_matches_eager(tmp_path, layout):
    """torch.compile (about a minute of compilation on a CPU) changes speed, not results, in either
    layout. Batches of 10 divide the 50 images, so the partial batch that compile drops does not exist."""
    eager = run(compose_config(tiny(tmp_path, "batch_size=10")), run_dir=tmp_path / "eager")
    compiled = run(compose_config(tiny(tmp_path, "batch_size=10", "compile=true", layout)),
                   run_dir=tmp_path / "compiled")
    assert compiled["final_train_loss"] == pytest.approx(eager["final_train_loss"], rel=1e-4)
    assert compiled["final_test_error"] == pytest.approx(eager["final_test_error"], abs=100 / 797 + 1e-9)


# ---------------------------------------------------------------- early stops (repro/train/stops.py)
HOLD_LOCK = """import sys, time
from repro.train.run_folder import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_cannot_train_in_a_locked_folder_and_a_dead_holder_never_blocks(tmp_path):
    import socket
    import subprocess
    import sys

    from repro.train import RunLocked

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked) as info:
            run(compose_config(tiny(tmp_path)), run_dir=run_dir)
        message = str(info.value)
        assert f"run folder {str(run_dir)!r} is in use by host {socket.gethostname()} pid {holder.pid}" in message
        assert "wait for it to end" in message and "\n" not in message and info.value.exit_code == 2
        assert sorted(p.name for p in run_dir.iterdir()) == ["train.lock"]  # nothing of the holder's touched
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, the kernel drops the lock
        holder.wait()
    assert (run_dir / "train.lock").exists()
    assert run(compose_config(tiny(tmp_path)), run_dir=run_dir)["status"] == "finished"
    assert not (run_dir / "train.lock").exists()


def test_without_working_file_locks_a_run_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert run(compose_config(tiny(tmp_path, "epochs=1")), run_dir=tmp_path / "run")["status"] == "finished"
    assert "warning: file locks do not work in" in capsys.readouterr().err


def nan_at(monkeypatch, call: int) -> list:
    """Make the ``call``-th training step of the process (1-based) report a NaN loss; returns the
    list that grows by one item per step."""
    from repro.train import trainer as trainer_module
    calls, real = [], trainer_module.train_step

    def step(*args):
        loss, logits = real(*args)
        calls.append(1)
        return (loss * math.nan if len(calls) == call else loss), logits

    monkeypatch.setattr(trainer_module, "train_step", step)
    return calls


def test_the_first_nonfinite_loss_stops_the_run_naming_epoch_and_step(tmp_path, monkeypatch):
    from repro.report import collect_runs
    from repro.train import Diverged

    run_dir = tmp_path / "runs" / "run"
    nan_at(monkeypatch, 4 + 3)  # 4 steps per epoch: epoch 2, step 3 (found at the epoch-end check)
    with pytest.raises(Diverged) as info:
        run(compose_config(tiny(tmp_path, "epochs=3")), run_dir=run_dir)
    message = str(info.value)
    assert message.startswith("diverged at epoch 2, step 3 of 4: training loss nan; lower optim.lr or set grad_clip")
    assert info.value.exit_code == 3 and "\n" not in message
    status = load_result(run_dir)
    assert (status["status"], status["epoch"], status["step"], status["loss"]) == ("diverged", 2, 3, "nan")
    assert status["reason"] == "diverged at epoch 2, step 3 of 4: training loss nan"
    assert set(status) == {*RESULT_COMMON_KEYS, "status", "epoch", "step", "global_step", "loss", "reason"}
    assert torch.load(run_dir / CHECKPOINT, weights_only=False)["epoch"] == 1  # the diverged epoch is not saved
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    with pytest.raises(Diverged, match="diverged at epoch 2, step 3 of 4: .*; not retrained: change optim.lr"):
        run(compose_config(tiny(tmp_path, "epochs=3")), run_dir=run_dir)  # a rerun does not train again
    collected = collect_runs([tmp_path / "runs"])
    assert len(collected.runs) == 0 and "diverged" in collected.excluded.iloc[0]["reason"]


def test_divergence_is_caught_within_a_check_interval_not_at_the_epoch_end(tmp_path, monkeypatch):
    from repro.train import Diverged
    from repro.train.trainer import DIVERGENCE_CHECK_STEPS

    calls = nan_at(monkeypatch, 3)
    with pytest.raises(Diverged, match="diverged at epoch 1, step 3 of 30: training loss nan"):
        run(compose_config(tiny(tmp_path, "steps_per_epoch=30")), run_dir=tmp_path / "run")
    assert len(calls) == DIVERGENCE_CHECK_STEPS < 30


def test_a_finite_run_is_not_stopped(tmp_path, monkeypatch):
    nan_at(monkeypatch, 10 ** 6)  # negative control: the wrapper alone changes nothing
    assert run(compose_config(tiny(tmp_path)), run_dir=tmp_path / "run")["status"] == "finished"


@pytest.mark.parametrize("file", ["checkpoint", "metrics"])
def test_a_full_disk_stops_with_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, file):
    import errno

    import repro.io
    from repro.train import DiskFull

    run_dir, overrides = tmp_path / "run", tiny(tmp_path, "epochs=2", "deterministic=true")
    straight = run(compose_config(overrides), run_dir=tmp_path / "straight")
    real = repro.io.atomic_write
    target = {"checkpoint": "checkpoint.new.pt", "metrics": "metrics.jsonl"}[file]
    writes = []

    def full_on_second(path, write):
        if Path(path).name == target:
            writes.append(path)
            if len(writes) == 2:
                return real(path, lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        return real(path, write)

    monkeypatch.setattr(repro.io, "atomic_write", full_on_second)
    with pytest.raises(DiskFull) as info:
        run(compose_config(overrides), run_dir=run_dir)
    assert str(info.value).startswith(f"no space left writing {run_dir / target} (No space left on device); ")
    assert "rerun the same command to resume" in str(info.value) and info.value.exit_code == 74
    assert torch.load(run_dir / CHECKPOINT, weights_only=False)["epoch"] == (1 if file == "checkpoint" else 2)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "train.lock").exists()
    monkeypatch.setattr(repro.io, "atomic_write", real)  # space freed
    resumed = run(compose_config(overrides), run_dir=run_dir)
    assert resumed["final_test_error"] == straight["final_test_error"]


# ---------------------------------------------------------------- evaluation cadence
def test_eval_every_evaluates_every_n_epochs_and_the_last(tmp_path, monkeypatch):
    calls = []
    original = Trainer.recalibrate_batchnorm
    monkeypatch.setattr(Trainer, "recalibrate_batchnorm", lambda self: (calls.append(self.epoch), original(self)))
    result = run(compose_config(tiny(tmp_path, "epochs=5", "eval_every=2", "data.val_size=10")),
                 run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if "test_error" in r] == [2, 4, 5]
    assert [r["epoch"] for r in rows if "val_error" in r] == [2, 4, 5]
    assert all("test_loss" not in r and "train_loss" in r for r in rows if r["epoch"] in (1, 3))
    assert calls == [2, 4, 5]  # BN recalibration only where an evaluation follows
    evaluated = [r for r in rows if "test_error" in r]
    assert result["best_test_error"] == min(r["test_error"] for r in evaluated)
    assert result["best_epoch"] in (2, 4, 5) and result["best_val_epoch"] in (2, 4, 5)
    calls.clear()
    run(compose_config(tiny(tmp_path, "epochs=3", "eval_every=2")), run_dir=tmp_path / "no-val")
    assert calls == [3]  # without a validation split: before the final evaluation only


def test_eval_every_at_its_default_leaves_every_existing_identity_unchanged(tmp_path):
    from repro.train.config import recorded_config
    from repro.train.identity import identity_hash

    config = recorded_config(load_config(compose_config(tiny(tmp_path))))
    before = {k: v for k, v in config.items() if k != "eval_every"}  # a config recorded before the key existed
    assert config["eval_every"] == 1 and identity_hash(config) == identity_hash(before)
    assert identity_hash({**config, "eval_every": 25}) != identity_hash(config)
    with pytest.raises(ConfigError, match="eval_every=0 is not valid"):
        load_config(compose_config(tiny(tmp_path, "eval_every=0")))


def test_the_table1_preset_trains_on_an_mnist_rot_format_folder(tmp_path, tiny_mnist_rot):
    """``experiment=paper_rotmnist`` end to end on a tiny folder: its cadence evaluates only the last of
    two epochs, and the record names the preset's network, data and augmentation."""
    tiny_mnist_rot(n_train=40, n_test=20)
    result = run(compose_config(["experiment=paper_rotmnist", f"data.root={tmp_path}", "data.verify_checksums=false",
                                 "epochs=2", "logger=none", "robustness=false"]), run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["test_error" in row for row in rows] == [False, True]
    assert (result["model"], result["group"], result["data"], result["augment"], result["n_train"]) == \
        ("rotmnist_cnn", "p4", "mnist_rot", "reference_rotation", 40)
    assert result["params"] == 24_680 and result["equivariance_error"] < 1e-4


def test_mnist_rot_files_a_download_brings_are_recorded_by_content_and_the_run_resumes(tmp_path, monkeypatch):
    """Unchecked MNIST-rot files absent at launch are fingerprinted once downloaded, so the record names
    them (data.content) and the same command then finds the run finished, not a different experiment."""
    from repro.data import mnist_rot
    from repro.train.identity import data_fingerprint

    monkeypatch.setattr(mnist_rot, "download_mnist_rot", lambda root, verify_checksums: (
        mnist_rot.write_mnist_rot_folder(root, n_train=40, n_test=20)))
    overrides = ["data=mnist_rot", f"data.root={tmp_path / 'data'}", "data.verify_checksums=false", "epochs=1",
                 "batch_size=20", "model.width=0.3", "equivariance_images=4", "robustness=false", "logger=none"]
    first = run(compose_config(overrides), run_dir=tmp_path / "run")
    assert first["config"]["data"]["content"] == data_fingerprint(first["config"]["data"]) is not None
    assert run(compose_config(overrides), run_dir=tmp_path / "run")["identity"] == first["identity"]
