"""End-to-end through the real CLI (``scripts/train.py`` under Hydra): CIFAR10/100-format
folders, rotated digits, sweeps with the basic and submitit_local launchers, resume
after ``kill -9``, and every bad-value error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import models

from repro.data import write_cifar_folder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_DIR": str(tmp_path), "HYDRA_FULL_ERROR": "0",
           # this checkout's packages, whichever copy is installed (submitit's workers too)
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("GCNN_DATA_ROOT", None)
    return env


def train(tmp_path: Path, *overrides: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``scripts/train.py`` from ``tmp_path`` (so runs/, multirun/ land there)."""
    proc = subprocess.run([sys.executable, str(SCRIPT), *overrides], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return [f"data.root={tmp_path / 'data'}", "data.train_size=50", "data.image_size=8", "epochs=1",
            "batch_size=16", "model.width=0.5", "equivariance_images=16", *extra]


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_single_run_on_digits_and_rerun_is_not_redone(tmp_path):
    proc = train(tmp_path, *tiny(tmp_path, "epochs=2"))
    run_dir = tmp_path / "runs" / "digits_rot" / "rotmnist-p4"
    [run_dir] = [p for p in run_dir.iterdir() if p.is_dir()]  # named after the overrides
    assert "epoch 2/2  train loss" in proc.stdout and "finished: final test error" in proc.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "finished" and [r["epoch"] for r in read_rows(run_dir)] == [1, 2]
    assert run_dir.name.endswith("-" + result["identity"]) and "data.train_size=50" in run_dir.name
    assert (run_dir / "metrics.csv").exists() and not (run_dir / ".hydra").exists()
    again = train(tmp_path, *tiny(tmp_path, "epochs=2"))
    assert "already finished" in again.stdout and "epoch 1/2" not in again.stdout


def test_a_refused_command_leaves_the_run_folder_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    train(tmp_path, *tiny(tmp_path, "group=z2"), f"hydra.run.dir={run_dir}")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = train(tmp_path, *tiny(tmp_path, "group=p4"), f"hydra.run.dir={run_dir}", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "holds a different experiment (group.name='z2' there, 'p4' now)" in proc.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # a bad value on a new folder leaves no folder behind
    train(tmp_path, *tiny(tmp_path, "epochs=0"), f"hydra.run.dir={tmp_path / 'new'}", check=False)
    assert not (tmp_path / "new").exists()


def test_two_cifar_folders_are_two_experiments(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        write_cifar_folder(tmp_path / name, kind="cifar10", n_train=40, n_test=20, seed=seed)
        train(tmp_path, "data=cifar_folder", f"data.root={tmp_path / name}", "data.preprocess=standardize",
              "epochs=1", "batch_size=20", "model.width=0.3", "equivariance_images=4", "robustness=false")
    folders = sorted((tmp_path / "runs" / "cifar_folder" / "rotmnist-p4").iterdir())
    assert len(folders) == 2  # the path is no part of the name: the content hash is


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_format_folder(tmp_path, kind):
    write_cifar_folder(tmp_path / "cifar", kind=kind, n_train=60, n_test=20)
    run_dir = tmp_path / "run"
    train(tmp_path, "data=cifar_folder", f"data.root={tmp_path / 'cifar'}", f"data.format={kind}",
          "data.preprocess=standardize", "augment=crop_flip", "epochs=1", "batch_size=32",
          "model.width=0.3", "equivariance_images=8", f"hydra.run.dir={run_dir}")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["data"] == "cifar_folder" and result["augment"] == "crop_flip"
    num_classes = 10 if kind == "cifar10" else 100
    model = models.build_model("rotmnist", "p4", num_classes, in_channels=3, width=0.3)
    assert result["params"] == models.count_parameters(model)  # the classes came from the folder
    assert 0 <= result["final_test_error"] <= 100


def test_multirun_sweep_with_the_basic_launcher_resumes_when_relaunched(tmp_path):
    args = ["-m", "group=z2,p4", "sweep_name=demo", *tiny(tmp_path)]
    train(tmp_path, *args)
    sweep = tmp_path / "multirun" / "demo"
    results = sorted(sweep.glob("*/result.json"))
    assert len(results) == 2
    groups = sorted(json.loads(p.read_text())["group"] for p in results)
    assert groups == ["p4", "z2"]
    assert all("group=" in p.parent.name for p in results)
    again = train(tmp_path, *args)
    assert again.stdout.count("already finished") == 2


def test_multirun_with_the_submitit_local_launcher(tmp_path):
    train(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
          "sweep_name=sub", "group=z2,p4", *tiny(tmp_path), timeout=600)
    results = sorted((tmp_path / "multirun" / "sub").glob("*/result.json"))
    assert len(results) == 2
    assert sorted(json.loads(p.read_text())["group"] for p in results) == ["p4", "z2"]


def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path):
    args = tiny(tmp_path, "epochs=3", "deterministic=true", "data.train_size=400", "data.image_size=16",
                "augment=crop_flip", "augment.pad=1", "batch_size=32", "logger=none")
    train(tmp_path, *args, "hydra.run.dir=straight")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args, f"hydra.run.dir={killed_dir}"],
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        metrics = killed_dir / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed_dir / "checkpoint.pt").exists() and not (killed_dir / "result.json").exists(), \
        "the run was not killed mid-training; make its epochs longer"
    train(tmp_path, *args, f"hydra.run.dir={killed_dir}")
    straight, resumed = read_rows(tmp_path / "straight"), read_rows(killed_dir)
    keep = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "lr")
    assert [{k: r[k] for k in keep} for r in resumed] == [{k: r[k] for k in keep} for r in straight]
    a = json.loads((tmp_path / "straight" / "result.json").read_text())
    b = json.loads((killed_dir / "result.json").read_text())
    assert (a["final_test_error"], a["final_train_loss"]) == (b["final_test_error"], b["final_train_loss"])


@pytest.mark.parametrize("overrides, message", [
    (["epochs=-1"], "error: epochs=-1 is not valid; expected an integer >= 1"),
    (["data=cifar10", "data.root={tmp}/missing", "data.download=false"], "error: data.root="),
    (["data=cifar_folder", "data.root={tmp}/missing"], "does not exist; data=cifar_folder reads your own folder"),
])
def test_bad_values_print_one_line_and_exit_2(tmp_path, overrides, message):
    proc = train(tmp_path, *[o.format(tmp=tmp_path) for o in overrides], check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("override, choices", [("group=p5", ["p4", "p4m", "z2"]),
                                               ("augment=rot", ["crop_flip", "none", "rot_flip"])])
def test_unknown_group_options_name_the_choices(tmp_path, override, choices):
    proc = train(tmp_path, override, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    key, value = override.split("=")
    assert f"Could not find '{key}/{value}'" in proc.stderr
    assert all(f"\t{choice}" in proc.stderr for choice in choices)


def test_slurm_preset_composes_with_the_documented_keys():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0 and launcher.mem_gb > 0


# ---------------------------------------------------------------- early stops: one line and an exit code each
def long_run(tmp_path: Path, run_dir: Path, epochs: int = 3) -> list[str]:
    """Overrides of a run of a few seconds per epoch in ``run_dir``."""
    return [*tiny(tmp_path, f"epochs={epochs}", "data.train_size=400", "data.image_size=16", "batch_size=32",
                  "logger=none", "robustness=false"), f"hydra.run.dir={run_dir}"]


def start(tmp_path: Path, overrides: list[str]) -> subprocess.Popen:
    """``scripts/train.py`` in the background, returned once it has finished its first epoch."""
    run_dir = Path(overrides[-1].split("=", 1)[1])
    command = [sys.executable, str(SCRIPT), *overrides]
    proc = subprocess.Popen(command, cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (run_dir / "metrics.jsonl").exists():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first epoch did; make it longer"
    return proc


def assert_one_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("signum, code, line", [(signal.SIGINT, 130, "interrupted at epoch "),
                                                (signal.SIGTERM, 143, "interrupted (SIGTERM) at epoch ")])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_the_same_command_resumes(tmp_path, signum, code, line):
    run_dir = tmp_path / "run"
    proc = start(tmp_path, long_run(tmp_path, run_dir))
    sent = time.time()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code and time.time() - sent < 10
    message = assert_one_line(stderr)
    assert message.startswith(line) and message.endswith("; rerun the same command to resume")
    epoch = int(message.split("at epoch ")[1].split(";")[0])
    import torch
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"] == epoch - 1  # intact
    again = train(tmp_path, *long_run(tmp_path, run_dir))
    assert f"resuming after epoch {epoch - 1}" in again.stdout and (run_dir / "result.json").exists()


def test_a_second_launch_exits_2_naming_the_holder_and_the_running_run_is_unharmed(tmp_path):
    run_dir = tmp_path / "run"
    first = start(tmp_path, long_run(tmp_path, run_dir, epochs=12))
    second = train(tmp_path, *long_run(tmp_path, run_dir, epochs=12), check=False)
    assert first.poll() is None, "the first run ended before the second launch; make it longer"
    assert second.returncode == 2
    message = assert_one_line(second.stderr)
    assert f"is in use by host {os.uname().nodename} pid {first.pid}" in message and str(run_dir) in message
    first.communicate(timeout=240)
    assert first.returncode == 0 and len(read_rows(run_dir)) == 12
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"


def test_a_diverged_run_exits_3_and_a_sweep_goes_on_with_its_other_jobs(tmp_path):
    single = train(tmp_path, *tiny(tmp_path, "optim=sgd", "optim.lr=1e30"), f"hydra.run.dir={tmp_path / 'one'}",
                   check=False)
    assert single.returncode == 3
    assert assert_one_line(single.stderr).startswith("error: diverged at epoch 1, step ")
    sweep = train(tmp_path, "-m", "optim=sgd", "optim.lr=1e30,0.01", "sweep_name=s", *tiny(tmp_path), check=False)
    assert sweep.returncode == 3 and "Traceback" not in sweep.stderr and "HYDRA_FULL_ERROR" not in sweep.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "multirun" / "s").glob("*/result.json"))
    assert statuses == ["diverged", "finished"]
    assert "error: diverged at epoch 1" in sweep.stderr and "1 job(s) of the sweep stopped early" in sweep.stderr


FULL_DISK = """import errno, runpy, sys
import repro.io
real = repro.io.atomic_write
def full(path, write):
    if str(path).endswith("checkpoint.new.pt"):
        write = lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
    return real(path, write)
repro.io.atomic_write = full
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_full_disk_exits_74_with_one_line_naming_the_file(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(SCRIPT), *tiny(tmp_path), f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 74
    message = assert_one_line(proc.stderr)
    assert message.startswith(f"error: no space left writing {run_dir / 'checkpoint.new.pt'} (No space left")


def test_slurm_jobs_that_time_out_are_requeued_and_rerun_the_same_job():
    """SLURM signals a job ``signal_delay_s`` before its time limit (and at preemption); submitit then
    calls the launcher's ``checkpoint``, which resubmits the same job (same overrides, so the same run
    folder, which resumes), and requeues it while ``max_num_timeout`` allows."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from submitit.core.job_environment import SignalHandler

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    params = cfg.hydra.launcher
    assert params.max_num_timeout >= 3 and params.signal_delay_s >= 60
    launcher = instantiate(params)
    args = (["group=p4m"], "hydra.sweep.dir", 0, "job_id_for_0", {})
    delayed = submitit.helpers.DelayedSubmission(launcher, *args)
    delayed.set_timeout(params.timeout_min, params.max_num_timeout)

    class Env:
        global_rank, requeued = 0, []

        def _requeue(self, countdown):
            self.requeued.append(countdown)

    class Paths:
        submitted_pickle = Path(os.devnull)

    handler = SignalHandler(Env(), Paths(), delayed)
    handler.has_timed_out, handler._exit = (lambda: True), (lambda: None)
    handler.checkpoint_and_try_requeue(signal.SIGUSR2)
    assert Env.requeued == [params.max_num_timeout - 1]
    resubmitted = launcher.checkpoint(*args)
    assert resubmitted.function is launcher and resubmitted.args == args
