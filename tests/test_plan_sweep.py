"""The sweep-cost estimate of scripts/plan_sweep.py: arithmetic by hand, validation, asking first."""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


plan = load_script("plan_sweep")


def test_sweep_macs_by_hand():
    sweep = plan.SweepPlan(networks={"allcnnc": ("z2", "p4")}, augments=("none",), seeds=(0, 1),
                           epochs={"allcnnc": 2})
    macs = plan.sweep_macs(sweep, macs_of=lambda arch, group, data: {"z2": 10, "p4": 30}[group])
    assert macs == 2 * 2 * (3 * 50_000 + 10_000) * (10 + 30)


def test_train_sizes_scale_the_work_unless_steps_are_equal():
    def macs(train_sizes, equal_steps):
        sweep = plan.SweepPlan(networks={"allcnnc": ("z2",)}, augments=("none",), seeds=(0,),
                               epochs={"allcnnc": 2}, train_sizes=train_sizes, equal_steps=equal_steps)
        return plan.sweep_macs(sweep, macs_of=lambda arch, group, data: 10)

    assert macs((1000, None), False) == 10 * 2 * (3 * 1000 + 10_000) + 10 * 2 * (3 * 50_000 + 10_000)
    assert macs((1000, None), True) == 2 * 10 * 2 * (3 * 50_000 + 10_000)


def test_a_cifar_folder_is_estimated_as_the_set_of_its_format():
    seen = []
    sweep = plan.SweepPlan(data="cifar_folder", data_format="cifar100", networks={"allcnnc": ("z2",)},
                           augments=("none",), seeds=(0,), epochs={"allcnnc": 1})
    assert plan.sweep_macs(sweep, macs_of=lambda arch, group, data: seen.append(data) or 1) == 3 * 50_000 + 10_000
    assert seen == ["cifar100"]
    with pytest.raises(ValueError, match="format='cifar5' is not valid"):
        plan.SweepPlan(data="cifar_folder", data_format="cifar5", epochs={"allcnnc": 1, "resnet44": 1})


def test_augments_come_from_the_config_groups():
    expected = sorted(p.stem for p in (ROOT / "configs" / "augment").glob("*.yaml"))
    with pytest.raises(ValueError, match=re.escape(f"expected one of {expected}")):
        plan.SweepPlan(augments=("rot",), epochs={"allcnnc": 1, "resnet44": 1})


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="'cifar5'.*cifar10"):
        plan.SweepPlan(data="cifar5", epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="augment='rot' is not valid; expected one of .*crop_flip"):
        plan.SweepPlan(augments=("rot",), epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="epochs for 'resnet44' is None"):
        plan.SweepPlan(epochs={"allcnnc": 1})
    with pytest.raises(ValueError, match="train size 60000 is not valid; expected 1..50000 or full"):
        plan.SweepPlan(epochs={"allcnnc": 1, "resnet44": 1}, train_sizes=(60_000,))
    assert plan.parse_train_sizes("1000, 5000,full,null") == (1000, 5000, None, None)
    with pytest.raises(ValueError, match="'1k'"):
        plan.parse_train_sizes("1k")


def test_recipe_epochs_come_from_the_composed_experiment_configs():
    from repro.train import compose_config
    for arch in ("allcnnc", "resnet44", "resnet26"):
        assert plan.recipe_epochs(arch) == compose_config([f"experiment=paper_{arch}"]).epochs
    assert plan.recipe_epochs("allcnnc") == 350  # Springenberg et al.'s schedule, configs/experiment/
    with pytest.raises(ValueError, match="experiment='paper_rotmnist' is not valid"):  # no such preset
        plan.recipe_epochs("rotmnist")


def test_model_macs_are_those_of_the_model_the_paper_recipe_builds():
    import models
    reference = models.build_model("resnet44", "p4m", head="reference")  # paper_resnet44's model.overrides
    assert plan.model_macs("resnet44", "p4m", "cifar10") == models.count_macs(reference, (3, 32, 32))


def test_durations_read_in_a_fitting_unit():
    assert [plan._duration(s) for s in (20, 600, 7200, 5 * 86400, 3 * 365 * 86400)] == \
        ["20 s", "10 min", "2.0 h", "5.0 days", "3.0 years"]


def test_confirm_refuses_without_gpu_and_terminal(capsys):
    assert not plan.confirm(force=False, is_tty=False)
    assert "FORCE=1" in capsys.readouterr().err
    assert plan.confirm(force=True, is_tty=False)
    assert plan.confirm(force=False, is_tty=True, ask=lambda prompt: "y")
    assert not plan.confirm(force=False, is_tty=True, ask=lambda prompt: "")


def test_plan_cli_goes_on_with_a_gpu(monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake GPU")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv("FORCE", raising=False)
    assert plan.main(["--epochs", "3"]) == 0
    assert "GPU found (Fake GPU): starting 30 runs." in capsys.readouterr().out


@pytest.fixture
def cpu_only(monkeypatch):
    """No GPU, no terminal, no FORCE; a fixed sweep size and matmul speed."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(plan, "sweep_macs", lambda sweep: 10 ** 15)
    monkeypatch.setattr(plan, "measure_matmul_throughput", lambda: 1e10)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv("FORCE", raising=False)


def test_plan_cli_refuses_on_non_tty_without_gpu(cpu_only, capsys):
    assert plan.main(["--epochs", "3"]) == 1
    out, err = capsys.readouterr()
    assert "30 training runs" in out  # (3 + 2 groups) x 2 augments x 3 seeds
    assert "about 55.6 h (1.9 h per run on average)" in out  # 1e15 MACs / (1e10 MAC/s x 0.5) = 2e5 s
    assert "refusing" in err and "FORCE=1" in err


def test_plan_cli_for_the_data_efficiency_sweep(cpu_only, capsys, monkeypatch):
    monkeypatch.setenv("FORCE", "1")
    assert plan.main(["--networks", "allcnnc", "--augments", "none", "--train-sizes", "1000,5000,10000,full",
                      "--equal-steps", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "36 training runs" in out  # 3 groups x 4 sizes x 3 seeds
    assert "train sizes 1000/5000/10000/full (equal optimiser steps)" in out


def test_plan_cli_bad_arguments_exit_2(cpu_only, capsys):
    assert plan.main(["--epochs", "0"]) == 2
    assert "epochs for 'allcnnc' is 0" in capsys.readouterr().err
    assert plan.main(["--networks", "vgg"]) == 2
    assert "network 'vgg' is not valid" in capsys.readouterr().err
    for epochs in ("resnet=5", "allcnnc=3,5"):  # a typo or a stray number is refused, never ignored
        assert plan.main(["--epochs", epochs]) == 2
        assert f"epochs item {epochs.split(',')[-1]!r} is not valid" in capsys.readouterr().err
