"""The make targets a user runs first: `make demo` (reduced here, full as a slow test)."""
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


def test_make_reproduce_table_trains_the_paper_table():
    from repro.train.config import PAPER_TABLE
    makefile = (ROOT / "Makefile").read_text()
    for experiment, groups in PAPER_TABLE.items():
        assert f"experiment={experiment} group={','.join(groups)} augment=$(AUGMENTS)" in makefile


def test_make_demo_at_reduced_size(tmp_path):
    done = make("demo", "DEMO_SIZES=50,100", "DEMO_SEEDS=0", "DEMO_EPOCHS=1", "DEMO_STEPS=2",
                f"DEMO_DIR={tmp_path}/multirun", f"DEMO_OUT={tmp_path}/results")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "multirun").rglob("result.json"))) == 6
    check_demo_outputs(tmp_path / "results", runs=6)


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


@pytest.mark.parametrize("target", ["demo", "reproduce-table", "reproduce-data-efficiency"])
def test_training_targets_pass_extra_overrides(target):
    planned = make("-n", target, "ARGS=data.verify_checksums=false data.train_size=1000",
                   "DATA=cifar_folder", "FORMAT=cifar100", "REPORT_ARGS=--wandb").stdout.replace("\\\n", " ")
    trains = [line for line in planned.splitlines() if "scripts/train.py" in line]
    assert trains and all("data.verify_checksums=false data.train_size=1000" in line for line in trains)
    if target != "demo":
        assert all("data=cifar_folder" in line and "data.format=cifar100" in line for line in trains)
    assert any("scripts/report.py" in line and "--wandb" in line for line in planned.splitlines())
