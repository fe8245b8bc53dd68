"""The make targets a user runs first: `make demo` (reduced here, full as a slow test)."""
import csv
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def check_demo_outputs(out: Path, runs: int) -> None:
    table = (out / "table.md").read_text()
    assert f"from {runs} finished run(s)" in table
    for plot in ("convergence.png", "data_efficiency.png"):
        assert (out / plot).stat().st_size > 10_000, plot


def planned(*args: str) -> list[str]:
    """The commands ``make -n`` prints, continuation lines joined."""
    return make("-n", *args).stdout.replace("\\\n", " ").splitlines()


@pytest.mark.parametrize("target, sweep", [("demo", "demo"), ("reproduce-table", "table"),
                                           ("reproduce-data-efficiency", "data-efficiency"),
                                           ("reproduce-rot-flip", "rot-flip"),
                                           ("reproduce-rotmnist", "rotmnist")])
def test_sweep_targets_call_the_one_entry_point(target, sweep):
    [command] = planned(target)
    assert f"scripts/sweep.py {sweep} " in command
    assert "group=" not in command and "augment" not in command  # the lists live in repro/sweeps.py


def test_make_demo_never_writes_the_record_unless_asked():
    [command] = planned("demo")
    assert "results/demo" not in command and "--record" not in command
    [command] = planned("demo", "RECORD=1")
    assert "--record" in command


def test_make_demo_at_reduced_size(tmp_path):
    done = make("demo", "DEMO_SIZES=50,100", "DEMO_SEEDS=0", "DEMO_EPOCHS=1", "DEMO_STEPS=2",
                f"DEMO_DIR={tmp_path}/multirun", f"DEMO_OUT={tmp_path}/results")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "multirun").rglob("result.json"))) == 6
    check_demo_outputs(tmp_path / "results", runs=6)
    assert "Beside the committed record results/demo" in done.stdout  # sizes 50 and full: only full is in both


@pytest.mark.slow  # about a minute: three multiruns, four runs, the report
def test_make_reproduce_rotmnist_end_to_end_on_an_mnist_rot_format_folder(tmp_path, tiny_mnist_rot):
    """Table 1's sweep (every network, the presets' recipes) on a tiny MNIST-rot-format folder: the
    report holds every network beside the paper's number, and no Δ, since one epoch is not the recipe."""
    tiny_mnist_rot(n_train=40, n_test=20)
    done = make("reproduce-rotmnist", "SEEDS=0", "EPOCHS=1", "DEVICE=cpu", f"SWEEP_DIR={tmp_path}/multirun",
                f"TABLE_OUT={tmp_path}/rotmnist", f"ARGS=data.root={tmp_path} data.verify_checksums=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.index("Estimated wall time") < done.stdout.index("scripts/train.py")  # the projection first
    assert len(list((tmp_path / "multirun").rglob("result.json"))) == 4  # Z2CNN, P4CNN, P4MCNN, P4CNN-RP
    with open(tmp_path / "rotmnist" / "table.csv", newline="") as f:
        rows = {(row["model"], row["group"]): row for row in csv.DictReader(f)}
    paper = {(net, group): row["paper_test_error"] for (net, group), row in rows.items()}
    assert paper == {("rotmnist_cnn", "z2"): "5.03", ("rotmnist_cnn", "p4"): "2.28",
                     ("rotmnist_cnn_rp", "p4"): "3.21", ("rotmnist_cnn", "p4m"): ""}
    # our own files (data.content) and one epoch are not the paper's recipe: no Δ, the keys named instead
    assert all(row["diff_vs_paper"] == "" for row in rows.values())
    assert {row["paper_recipe_keys"] for row in rows.values()} == {"data.content, epochs", ""}
    table = (tmp_path / "rotmnist" / "table.md").read_text()
    assert all(name in table for name in ("Z2CNN (rotmnist_cnn)", "P4CNN (rotmnist_cnn)", "P4CNN-RP", "MNIST-rot"))


@pytest.mark.slow
def test_make_demo_at_full_size(tmp_path):
    done = make("demo", f"DEMO_DIR={tmp_path}/multirun", f"DEMO_OUT={tmp_path}/results", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "multirun").rglob("result.json"))) == 18  # 3 groups x 3 sizes x 2 seeds
    check_demo_outputs(tmp_path / "results", runs=18)


def test_reproduce_table_refuses_without_gpu_or_force():
    done = make("reproduce-table", "EPOCHS=1", env={"CUDA_VISIBLE_DEVICES": "", "FORCE": ""}, timeout=300)
    assert done.returncode != 0
    assert "FORCE=1" in done.stdout + done.stderr
    assert not (ROOT / "multirun" / "paper_cifar10_none_crop_flip").exists()


def test_make_help_lists_every_documented_target():
    listed = make("help").stdout
    for target in ("demo", "test", "figures", "reproduce-table", "reproduce-data-efficiency", "report",
                   "bench", "gpu-check", "clean"):
        assert f"{target}\t" in listed


@pytest.mark.parametrize("target", ["demo", "reproduce-table", "reproduce-data-efficiency", "reproduce-rot-flip"])
def test_training_targets_pass_the_user_variables(target):
    """Each variable reaches scripts/sweep.py; its --dry-run shows the commands it then runs."""
    [command] = planned(target, "ARGS=data.verify_checksums=false data.train_size=1000", "DATA=cifar_folder",
                        "FORMAT=cifar100", "REPORT_ARGS=--wandb", "SEEDS=4", "DEMO_SEEDS=4", "EPOCHS=2",
                        "DEMO_EPOCHS=2", "LAUNCHER=slurm")
    done = subprocess.run(command.replace("scripts/sweep.py", "scripts/sweep.py --dry-run", 1), shell=True,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [line for line in done.stdout.splitlines() if line.startswith("+ ")]
    trains, report = runs[:-1], runs[-1]
    assert trains and all("data.verify_checksums=false data.train_size=1000" in line and "seed=4" in line
                          and "epochs=2" in line for line in trains)
    if target != "demo":
        assert all("data=cifar_folder" in line and "data.format=cifar100" in line
                   and "hydra/launcher=slurm" in line for line in trains)
    assert "scripts/report.py" in report and "--wandb" in report
