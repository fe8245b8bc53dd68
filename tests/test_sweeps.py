"""The named sweeps (repro/sweeps.py) and the cost model (repro/cost.py): arithmetic by hand, validation,
asking first, the commands each sweep runs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro import cost
from repro import sweeps

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_macs_by_hand():
    sweep = sweeps.SweepPlan(networks={"allcnnc": ("z2", "p4")}, augments=("none",), seeds=(0, 1),
                           epochs={"allcnnc": 2})
    macs = sweeps.sweep_macs(sweep, macs_of=lambda arch, group, data: {"z2": 10, "p4": 30}[group])
    assert macs == 2 * 2 * (3 * 50_000 + 10_000) * (10 + 30)


def test_train_sizes_scale_the_work_unless_steps_are_equal():
    def macs(train_sizes, equal_steps):
        sweep = sweeps.SweepPlan(networks={"allcnnc": ("z2",)}, augments=("none",), seeds=(0,),
                               epochs={"allcnnc": 2}, train_sizes=train_sizes, equal_steps=equal_steps)
        return sweeps.sweep_macs(sweep, macs_of=lambda arch, group, data: 10)

    assert macs((1000, None), False) == 10 * 2 * (3 * 1000 + 10_000) + 10 * 2 * (3 * 50_000 + 10_000)
    assert macs((1000, None), True) == 2 * 10 * 2 * (3 * 50_000 + 10_000)


def test_a_cifar_folder_is_estimated_as_the_set_of_its_format():
    seen = []
    sweep = sweeps.SweepPlan(data="cifar_folder", data_format="cifar100", networks={"allcnnc": ("z2",)},
                           augments=("none",), seeds=(0,), epochs={"allcnnc": 1})
    assert sweeps.sweep_macs(sweep, macs_of=lambda arch, group, data: seen.append(data) or 1) == 3 * 50_000 + 10_000
    assert seen == ["cifar100"]
    with pytest.raises(ValueError, match="format='cifar5' is not valid"):
        sweeps.SweepPlan(data="cifar_folder", data_format="cifar5", epochs={"allcnnc": 1, "resnet44": 1})


def test_augments_come_from_the_config_groups():
    expected = sorted(p.stem for p in (ROOT / "configs" / "augment").glob("*.yaml"))
    with pytest.raises(ValueError, match=re.escape(f"expected one of {expected}")):
        sweeps.SweepPlan(augments=("rot",), epochs={"allcnnc": 1, "resnet44": 1})


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="'cifar5'.*cifar10"):
        sweeps.SweepPlan(data="cifar5", epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="augment='rot' is not valid; expected one of .*crop_flip"):
        sweeps.SweepPlan(augments=("rot",), epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="epochs for 'resnet44' is None"):
        sweeps.SweepPlan(epochs={"allcnnc": 1})
    with pytest.raises(ValueError, match="train size 60000 is not valid; expected 1..50000 or full"):
        sweeps.SweepPlan(epochs={"allcnnc": 1, "resnet44": 1}, train_sizes=(60_000,))
    assert sweeps.parse_train_sizes("1000, 5000,full,null") == (1000, 5000, None, None)
    assert sweeps.parse_seeds("0, 1") == (0, 1)
    with pytest.raises(ValueError, match="seed 'a' is not valid"):
        sweeps.parse_seeds("0,a")
    with pytest.raises(ValueError, match="'1k'"):
        sweeps.parse_train_sizes("1k")


def test_recipe_epochs_come_from_the_composed_experiment_configs():
    from repro.train import compose_config
    for arch in ("allcnnc", "resnet44", "resnet26", "rotmnist", "rotmnist_z2cnn"):
        assert sweeps.recipe_epochs(arch) == compose_config([f"experiment=paper_{arch}"]).epochs
    assert sweeps.recipe_epochs("allcnnc") == 350  # Springenberg et al.'s schedule, configs/experiment/
    assert (sweeps.recipe_epochs("rotmnist_z2cnn"), sweeps.recipe_epochs("rotmnist")) == (300, 100)  # reference code
    with pytest.raises(ValueError, match="experiment='paper_mnist' is not valid"):  # no such preset
        sweeps.recipe_epochs("mnist")


def test_model_macs_are_those_of_the_model_the_paper_recipe_builds():
    import models
    reference = models.build_model("resnet44", "p4m", head="reference")  # paper_resnet44's model.overrides
    assert sweeps.model_macs("resnet44", "p4m", "cifar10") == models.count_macs(reference, (3, 32, 32))


def test_durations_read_in_a_fitting_unit():
    assert [cost.format_duration(s) for s in (20, 600, 7200, 5 * 86400, 3 * 365 * 86400)] == \
        ["20 s", "10 min", "2.0 h", "5.0 days", "3.0 years"]


def test_confirm_refuses_without_gpu_and_terminal(capsys):
    assert not sweeps.confirm(force=False, is_tty=False)
    assert "FORCE=1" in capsys.readouterr().err
    assert sweeps.confirm(force=True, is_tty=False)
    assert sweeps.confirm(force=False, is_tty=True, ask=lambda prompt: "y")
    assert not sweeps.confirm(force=False, is_tty=True, ask=lambda prompt: "")


def values(**kwargs) -> sweeps.UserValues:
    return sweeps.UserValues(**kwargs)


def test_a_gpu_sweep_goes_on_with_a_gpu(monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake GPU")
    assert sweeps.go_ahead(sweeps.make_launch("table", values(epochs="3")), force=False, is_tty=False)
    assert "GPU found (Fake GPU): starting 30 runs." in capsys.readouterr().out


@pytest.fixture
def cpu_only(monkeypatch):
    """No GPU; a fixed sweep size and matmul speed."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sweeps, "sweep_macs", lambda sweep: 10 ** 15)
    monkeypatch.setattr(cost, "measure_matmul_throughput", lambda: 1e10)


def test_a_gpu_sweep_refuses_on_non_tty_without_gpu(cpu_only, capsys):
    assert sweeps.run_sweep(sweeps.make_launch("table", values(epochs="3")), force=False, is_tty=False) == 1
    out, err = capsys.readouterr()
    assert "30 training runs" in out  # (3 + 2 groups) x 2 augments x 3 seeds
    assert "about 55.6 h (1.9 h per run on average)" in out  # 1e15 MACs / (1e10 MAC/s x 0.5) = 2e5 s
    assert "refusing" in err and "FORCE=1" in err
    assert "scripts/train.py" not in out  # nothing launched


def test_the_demo_needs_no_gpu_and_no_confirmation(cpu_only, capsys):
    assert sweeps.go_ahead(sweeps.make_launch("demo"), force=False, is_tty=False)
    assert "18 training runs on digits_rot (rotmnist: z2/p4/p4m" in capsys.readouterr().out


def test_the_data_efficiency_estimate(cpu_only, capsys):
    assert sweeps.go_ahead(sweeps.make_launch("data-efficiency", values(epochs="3")), force=True, is_tty=False)
    out = capsys.readouterr().out
    assert "36 training runs" in out  # 3 groups x 4 sizes x 3 seeds
    assert "train sizes 1000/5000/10000/full (equal optimiser steps)" in out


def test_bad_user_values_are_refused():
    with pytest.raises(ValueError, match="epochs for 'allcnnc' is 0"):
        sweeps.make_launch("table", values(epochs="0"))
    with pytest.raises(ValueError, match="network='vgg' is not valid"):
        sweeps.make_launch("table", values(networks="vgg"))
    for epochs in ("resnet=5", "allcnnc=3,5"):  # a typo or a stray number is refused, never ignored
        with pytest.raises(ValueError, match=f"epochs item {epochs.split(',')[-1]!r} is not valid"):
            sweeps.make_launch("table", values(epochs=epochs))
    with pytest.raises(ValueError, match="sweep='tabel' is not valid; expected one of"):
        sweeps.get_sweep("tabel")
    with pytest.raises(ValueError, match="sweep 'table' has no committed record"):
        sweeps.make_launch("table", record=True)


def test_sweep_cli_exits_2_on_a_bad_value():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep.py"), "table", "--seeds", "0",
                           "--epochs", "0", "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr == "error: epochs for 'allcnnc' is 0; give a positive number " \
        "(EPOCHS=N, or arch=N,... per network)\n"


def train_overrides(launch: sweeps.Launch) -> list[list[str]]:
    return [command[3:] for command in launch.commands()[:-1]]


def test_the_table_trains_each_network_of_the_paper_table_in_its_own_multirun():
    launch = sweeps.make_launch("table", values(data="cifar_folder", data_format="cifar100", seeds="0",
                                              epochs="resnet44=2", overrides=("a=1",)))
    assert train_overrides(launch) == [
        ["experiment=paper_allcnnc", "group=z2,p4,p4m", "augment=none,crop_flip", "seed=0", "hydra/launcher=basic",
         "hydra.sweep.dir=multirun/paper_cifar_folder_none_crop_flip/allcnnc", "data=cifar_folder",
         "data.format=cifar100", "a=1"],
        ["experiment=paper_resnet44", "group=z2,p4m", "augment=none,crop_flip", "seed=0", "epochs=2",
         "hydra/launcher=basic", "hydra.sweep.dir=multirun/paper_cifar_folder_none_crop_flip/resnet44",
         "data=cifar_folder", "data.format=cifar100", "a=1"]]
    assert [command[0] for command in train_overrides(launch)] == [f"experiment={e}" for e in sweeps.PAPER_TABLE]
    assert launch.commands()[-1][2:] == ["multirun/paper_cifar_folder_none_crop_flip", "--out", "results/cifar_folder"]


def test_rot_flip_and_data_efficiency_write_where_the_makefile_wrote():
    rot_flip = sweeps.make_launch("rot-flip")
    assert rot_flip.sweep_dir == "multirun/paper_cifar10_none_rot_flip"
    assert rot_flip.out == "results/cifar10_none_rot_flip"
    efficiency = sweeps.make_launch("data-efficiency", values(data="cifar100"))
    [overrides] = train_overrides(efficiency)
    # equal steps: one pass over the full set per epoch, ceil(50000 / batch 128) = 391 steps
    assert "data.train_size=1000,5000,10000,null" in overrides and "steps_per_epoch=391" in overrides
    assert not any(item.startswith("augment=") for item in overrides)  # the recipe's own augmentation
    assert efficiency.out == "results/data_efficiency_cifar100"


def test_the_demo_writes_an_untracked_folder_and_compares_with_the_record():
    demo = sweeps.make_launch("demo")
    [overrides] = train_overrides(demo)
    assert overrides == ["group=z2,p4,p4m", "data.train_size=100,300,null", "steps_per_epoch=8", "seed=0,1",
                         "epochs=20", "hydra.sweep.dir=multirun/demo"]
    assert demo.commands()[-1][3:] == ["--out", "results/latest/demo", "--compare-to", "results/demo"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/latest/demo/table.md"], cwd=ROOT)
    assert ignored.returncode == 0, "the demo's output folder must be git-ignored"
    record = sweeps.make_launch("demo", record=True)
    assert record.commands()[-1][3:] == ["--out", "results/demo"]


def test_run_sweep_stops_at_the_first_failing_command(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(sweeps.subprocess, "run", lambda command, cwd: ran.append(command) or
                        subprocess.CompletedProcess(command, 3))
    monkeypatch.setattr(sweeps, "go_ahead", lambda *args: True)
    assert sweeps.run_sweep(sweeps.make_launch("table"), force=True, is_tty=False) == 3
    assert len(ran) == 1 and "experiment=paper_allcnnc" in ran[0]
    assert sweeps.run_sweep(sweeps.make_launch("table"), force=True, is_tty=False, dry_run=True) == 0
    assert capsys.readouterr().out.count("\n+ ") == 3  # printed: 2 networks + the report


def test_the_gpu_check_projects_the_table_sweep():
    from repro.bench import gpu
    table = sweeps.SWEEPS["table"]
    assert gpu.PAPER_TABLE is sweeps.PAPER_TABLE == dict(table.experiments)
    assert gpu.REPRODUCE_TABLE_RUNS_PER_GROUP == len(table.augments) * len(table.seeds) == 6


def test_bench_and_estimate_count_with_one_cost_model():
    from repro.bench import training
    assert training.FLOP_PER_MAC_TRAIN == cost.FLOP_PER_MAC * cost.TRAIN_PASSES == 6
    assert cost.run_macs(10, 4, 2) == (3 * 10 + 4) * 2


def test_data_sizes_come_from_the_data_module():
    assert sweeps.data_size("cifar100") == (50_000, 10_000, 100, (3, 32, 32))
    digits = sweeps.data_size("digits_rot", 16)
    assert (digits.train, digits.classes, digits.shape) == (1000, 10, (1, 16, 16))


def test_the_rotmnist_sweep_is_table_1_on_mnist_rot_with_five_seeds():
    plan = sweeps.make_launch("rotmnist").plan
    assert plan.networks == {"rotmnist_z2cnn": ("z2",), "rotmnist": ("p4", "p4m"), "rotmnist_rp": ("p4",)}
    assert plan.seeds == (0, 1, 2, 3, 4) and plan.data == "mnist_rot" and len(plan.jobs()) == 20
    assert sweeps.data_size("mnist_rot") == (12_000, 50_000, 10, (1, 28, 28))
    # the cost model counts the evaluated epochs only: 300 / 25 and 100 / 25 test passes
    tested = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweeps, "run_macs", lambda seen, test, macs: tested.append(test) or 0)
        sweeps.sweep_macs(plan, macs_of=lambda *_: 1)
    assert sorted(set(tested)) == [4 * 50_000, 12 * 50_000]
