"""The report on synthetic run folders: exact numbers, excluded runs, warnings, figures, CLI, sweep plan."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from repro.report import (GROUP_COLORS, RunFileWarning, build_report, collect_runs, column_label,
                          convergence_summary, load_reference, summarize)
from repro.report import plan
from repro.report.plots import _size_positions
from repro.report.table import format_error

ROOT = Path(__file__).resolve().parents[1]


def write_run(run_dir: Path, *, model: str = "allcnnc", group: str = "z2", augment: str = "none",
              data: str = "cifar10", train_size: int | None = None, seed: int = 0, epochs: int = 4,
              final: float = 10.0, equivariance: float = 0.5, finished: bool = True,
              epochs_done: int | None = None, status: str = "finished", mtime: float | None = None,
              hydra_config: bool = False) -> Path:
    """A run directory in the trainer's format: test error falls linearly from
    ``final + 3 * (epochs - 1)`` to ``final`` (%), train loss = test error / 10."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = epochs if epochs_done is None else epochs_done
    lines = []
    for epoch in range(1, done + 1):
        error = final + 3.0 * (epochs - epoch)
        lines.append(json.dumps({"epoch": epoch, "train_loss": error / 10, "train_error": error - 1,
                                 "test_loss": error / 9, "test_error": error, "lr": 0.01,
                                 "epoch_time_s": 1.0, "images_per_s": 100.0}))
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if hydra_config:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "config.yaml").write_text(
            f"seed: {seed}\nepochs: {epochs}\nmodel:\n  name: {model}\ngroup:\n  name: {group}\n"
            f"augment:\n  name: {augment}\ndata:\n  name: {data}\n  train_size: {train_size or 'null'}\n")
    if finished:
        result = {"status": status, "model": model, "group": group, "augment": augment, "data": data,
                  "train_size": train_size, "seed": seed, "epochs": epochs, "final_test_error": final,
                  "best_test_error": final, "best_epoch": epochs, "final_train_loss": final / 10,
                  "params": 1000 + len(group), "macs": 50_000, "equivariance_error": equivariance,
                  "equivariance_group": "p4m" if group == "z2" else group, "config": {},
                  "git_commit": "abc", "torch_version": "2.x", "device": "cpu", "wall_time_s": 12.0}
        (run_dir / "result.json").write_text(json.dumps(result))
        if mtime is not None:
            os.utime(run_dir / "result.json", (mtime, mtime))
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A Hydra-like multirun: 3 seeds of z2 and 2 of p4m on CIFAR10, 2 seeds of z2 on
    CIFAR10+, a crashed run, a run with status 'failed', a duplicate and a corrupt file."""
    root = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    for seed, final, equiv in [(0, 10.0, 0.5), (1, 11.0, 0.7), (2, 13.0, 0.6)]:
        write_run(root / f"z2-none-{seed}", seed=seed, final=final, equivariance=equiv, mtime=1_000_000)
    for seed, final in [(0, 8.0), (1, 8.5)]:
        write_run(root / f"p4m-none-{seed}", group="p4m", seed=seed, final=final, equivariance=1e-6)
    for seed, final in [(0, 7.0), (1, 9.0)]:
        write_run(tmp_path / "single" / f"z2-cf-{seed}", augment="crop_flip", seed=seed, final=final)
    write_run(root / "crashed", group="p4", epochs=5, epochs_done=2, finished=False, hydra_config=True)
    write_run(root / "failed", group="p4", seed=1, epochs=5, epochs_done=3, status="failed")
    # An older copy of z2/none/seed 0 with a different number: must not enter the average.
    write_run(root / "old-copy", seed=0, final=50.0, mtime=500_000)
    corrupt = write_run(root / "corrupt", group="p4", seed=2)
    (corrupt / "result.json").write_text('{"status": "finished", "model": ')
    return tmp_path


def test_collect_sorts_runs_into_kept_and_excluded_with_reasons(sweep):
    with pytest.warns(RunFileWarning, match=r"corrupt.*result\.json"):
        runs = collect_runs([sweep])
    assert len(runs.runs) == 7
    reasons = {Path(p).name: (s, r) for p, s, r in runs.excluded[["path", "status", "reason"]].itertuples(index=False)}
    assert set(reasons) == {"crashed", "failed", "old-copy", "corrupt"}
    assert reasons["crashed"][0] == "unfinished" and "reached epoch 2 of 5" in reasons["crashed"][1]
    assert reasons["failed"][0] == "unfinished" and "'failed'" in reasons["failed"][1]
    assert "reached epoch 3 of 5" in reasons["failed"][1]
    assert reasons["old-copy"][0] == "duplicate" and "z2-none-0" in reasons["old-copy"][1]
    assert reasons["corrupt"][0] == "corrupt"
    assert any(str(sweep) in w and "corrupt" in w for w in runs.warnings)
    # The crashed run's identity comes from Hydra's saved config.
    crashed = runs.excluded[runs.excluded["path"].str.endswith("crashed")].iloc[0]
    assert (crashed["model"], crashed["group"], crashed["epochs"]) == ("allcnnc", "p4", 5)


def test_table_numbers_equal_a_hand_computation(sweep):
    with pytest.warns(RunFileWarning):
        runs = collect_runs([sweep])
    summary = summarize(runs.runs, load_reference())
    z2 = summary[(summary["group"] == "z2") & (summary["augment"] == "none")].iloc[0]
    assert z2["n"] == 3
    assert z2["test_error_mean"] == pytest.approx(statistics.mean([10.0, 11.0, 13.0]), abs=1e-12)
    assert z2["test_error_std"] == pytest.approx(statistics.stdev([10.0, 11.0, 13.0]), abs=1e-12)
    assert z2["paper_test_error"] == 9.44
    assert z2["diff_vs_paper"] == pytest.approx(34.0 / 3 - 9.44, abs=1e-12)
    assert z2["equivariance_error_mean"] == pytest.approx(0.6, abs=1e-12)
    assert z2["equivariance_group"] == "p4m"
    plus = summary[(summary["group"] == "z2") & (summary["augment"] == "crop_flip")].iloc[0]
    assert (plus["n"], plus["test_error_mean"], plus["paper_test_error"]) == (2, 8.0, 8.86)
    assert plus["test_error_std"] == pytest.approx(statistics.stdev([7.0, 9.0]), abs=1e-12)
    assert list(summary["group"]) == ["z2", "p4m", "z2"]


def test_report_files_show_the_hand_computed_cells(sweep, tmp_path):
    with pytest.warns(RunFileWarning):
        report = build_report([sweep], tmp_path / "out")
    markdown = (tmp_path / "out" / "table.md").read_text()
    mean, std = statistics.mean([10.0, 11.0, 13.0]), statistics.stdev([10.0, 11.0, 13.0])
    z2_row = next(line for line in markdown.splitlines() if line.startswith("| All-CNN-C | z2 |"))
    cells = [c.strip() for c in z2_row.strip("|").split("|")]
    assert cells[:6] == ["All-CNN-C", "z2", "4", "1.0k", "1.37M", f"{mean:.2f} ± {std:.2f} (n=3)"]
    assert cells[6:9] == ["9.44", f"{mean - 9.44:+.2f}", "6.0e-01"]
    assert cells[9:11] == ["8.00 ± 1.41 (n=2)", "8.86"]
    assert "| 5.0e-01 (p4m) |" in markdown and "| 7.0e-01 (p4m) |" in markdown  # per-run equivariance
    assert "CIFAR10+" in markdown and "## Excluded runs (4)" in markdown
    assert "reached epoch 2 of 5" in markdown and "## Warnings (1)" in markdown
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table["n"].tolist() == [3, 2, 2]
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "CIFAR10+" in tex
    assert {p.name for p in report.figures} == {"convergence.png", "convergence.pdf"}


def test_unfinished_runs_only_still_build_a_report(tmp_path):
    write_run(tmp_path / "runs" / "a", finished=False, epochs_done=1)
    build_report([tmp_path / "runs"], tmp_path / "out")
    assert "## Excluded runs (1)" in (tmp_path / "out" / "table.md").read_text()


def test_corrupt_metrics_line_warns_with_file_and_line_and_keeps_the_run(tmp_path):
    run = write_run(tmp_path / "r", epochs=3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "test_err\n')
    with pytest.warns(RunFileWarning, match=r"metrics\.jsonl: skipped unparseable line\(s\) \[4\]"):
        runs = collect_runs([tmp_path])
    assert len(runs.runs) == 1 and runs.curves["epoch"].tolist() == [1, 2, 3]


def test_finished_run_without_metrics_warns_and_stays_in_the_table(tmp_path):
    run = write_run(tmp_path / "r")
    (run / "metrics.jsonl").unlink()
    with pytest.warns(RunFileWarning, match="metrics.jsonl: missing"):
        runs = collect_runs([tmp_path])
    assert len(runs.runs) == 1 and runs.curves.empty


def test_result_without_required_keys_is_corrupt(tmp_path):
    run = write_run(tmp_path / "r")
    result = json.loads((run / "result.json").read_text())
    del result["final_test_error"]
    (run / "result.json").write_text(json.dumps(result))
    with pytest.warns(RunFileWarning, match="lacks keys \\['final_test_error'\\]"):
        runs = collect_runs([tmp_path])
    assert runs.runs.empty and runs.excluded["status"].tolist() == ["corrupt"]


def _png_is_drawn(path: Path) -> bool:
    pixels = matplotlib.image.imread(path)
    return path.stat().st_size > 10_000 and pixels.std() > 0.05


def test_convergence_plot_is_produced_and_not_empty(sweep, tmp_path):
    with pytest.warns(RunFileWarning):
        build_report([sweep], tmp_path / "out")
    assert _png_is_drawn(tmp_path / "out" / "convergence.png")
    assert (tmp_path / "out" / "convergence.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "out" / "data_efficiency.png").exists()


def test_data_efficiency_sweep_gets_a_column_per_size_and_a_plot(tmp_path):
    for group, base in [("z2", 30.0), ("p4", 25.0), ("p4m", 22.0)]:
        for size, drop in [(100, 0.0), (300, 10.0), (None, 18.0)]:
            for seed in (0, 1):
                write_run(tmp_path / "runs" / f"{group}-{size}-{seed}", model="rotmnist", group=group,
                          data="digits_rot", train_size=size, seed=seed, epochs=3, final=base - drop + seed)
    report = build_report([tmp_path / "runs"], tmp_path / "out")
    assert _png_is_drawn(tmp_path / "out" / "data_efficiency.png")
    assert len(report.figures) == 4
    markdown = (tmp_path / "out" / "table.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Network"))
    assert "digits_rot, 100 train" in header and "digits_rot, 300 train" in header
    assert "digits_rot, full" in header and "paper" not in header
    p4_row = next(line for line in markdown.splitlines() if line.startswith("| RotMNIST-CNN | p4 |"))
    assert "15.50 ± 0.71 (n=2)" in p4_row  # 300 train: 25 - 10 + {0, 1}


def test_full_training_set_sits_at_its_recorded_size():
    panel = pd.DataFrame({"train_size": pd.Series([100, None, 300], dtype=object),
                          "n_train": [100, 1437, 300]})
    positions, labels = _size_positions(panel)
    assert positions == {100: 100.0, 300: 300.0, None: 1437.0}
    assert labels[None] == "full\n(1437)"
    positions, labels = _size_positions(panel.drop(columns="n_train"))
    assert positions[None] == 600.0 and labels[None] == "full"


def test_training_images_recorded_or_known(tmp_path):
    write_run(tmp_path / "full", model="rotmnist", data="digits_rot")
    write_run(tmp_path / "sub", model="rotmnist", data="digits_rot", train_size=100, seed=1)
    run = write_run(tmp_path / "val", seed=2)
    result = json.loads((run / "result.json").read_text())
    result["config"] = {"data": {"val_size": 5000}}
    (run / "result.json").write_text(json.dumps(result))
    runs = collect_runs([tmp_path]).runs.set_index("seed")
    assert runs.loc[0, "n_train"] == 1000 and runs.loc[1, "n_train"] == 100 and runs.loc[2, "n_train"] == 45_000


def test_column_labels():
    assert column_label("cifar10", "none") == "CIFAR10"
    assert column_label("cifar10", "crop_flip") == "CIFAR10+"
    assert column_label("cifar100", "crop_flip") == "CIFAR100+"
    assert column_label("cifar10", "rot_flip") == "CIFAR10 rot_flip"
    assert column_label("digits_rot", "none") == "digits_rot"
    assert column_label("digits_rot", "none", 300, show_size=True) == "digits_rot, 300 train"
    assert column_label("digits_rot", "none", None, show_size=True) == "digits_rot, full"


def test_format_error():
    assert format_error(9.444, 0.1234, 3) == "9.44 ± 0.12 (n=3)"
    assert format_error(9.444, float("nan"), 1) == "9.44 (n=1)"


def test_convergence_summary_by_hand(tmp_path):
    # z2 ends at 10 after 8 epochs (errors 31, 28, ..., 10); p4 runs 8 epochs ending at 4
    # (25, 22, 19, 16, 13, 10, 7, 4): it reaches 10 at epoch 6.
    write_run(tmp_path / "z2", epochs=8, final=10.0)
    write_run(tmp_path / "p4", group="p4", epochs=8, final=4.0)
    summary = convergence_summary(collect_runs([tmp_path]).curves)
    assert summary["group"].tolist() == ["z2", "p4"]
    assert summary["first_epoch_at_z2_final"].tolist() == [8, 6]
    assert summary["error_at_25pct"].tolist() == [28.0, 22.0]  # epoch 2
    assert summary["error_at_50pct"].tolist() == [22.0, 16.0]  # epoch 4


def test_groups_have_fixed_distinct_colours():
    assert set(GROUP_COLORS) == {"z2", "p4", "p4m"} and len(set(GROUP_COLORS.values())) == 3


def test_reference_file_has_the_papers_cifar_table_with_sources():
    reference = load_reference()
    cifar = reference[reference["dataset"] == "cifar10"].set_index(["network", "group", "augment"])
    assert len(cifar.loc[["allcnnc", "resnet44", "resnet26"]]) == 14
    assert cifar.loc[("resnet44", "p4m", "crop_flip"), "test_error"] == 4.94
    assert reference["source"].notna().all()


def test_bad_reference_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_reference(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("network,group\nallcnnc,z2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_reference(tmp_path / "bad.csv")


def test_missing_path_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        collect_runs([tmp_path / "nowhere"])


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_exits_2_with_a_clear_message_when_no_runs_are_found(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path / "empty"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "error: no runs found under" in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_builds_from_several_paths_and_prints_warnings(sweep, tmp_path, capsys):
    code = _load_script("report").main([str(sweep / "multirun"), str(sweep / "single"),
                                        "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0 and "7 finished run(s) averaged, 4 excluded" in out
    assert "warning:" in err and "corrupt" in err
    assert (tmp_path / "out" / "table.md").exists()


# --- reproduce-table planning -------------------------------------------------------------

def test_sweep_macs_by_hand():
    sweep = plan.SweepPlan(networks={"allcnnc": ("z2", "p4")}, augments=("none",), seeds=(0, 1),
                           epochs={"allcnnc": 2})
    macs = plan.sweep_macs(sweep, macs_of=lambda arch, group, data: {"z2": 10, "p4": 30}[group])
    assert macs == 2 * 2 * (3 * 50_000 + 10_000) * (10 + 30)


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="'cifar5'.*cifar10"):
        plan.SweepPlan(data="cifar5", epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="augment 'rot'"):
        plan.SweepPlan(augments=("rot",), epochs={"allcnnc": 1, "resnet44": 1})
    with pytest.raises(ValueError, match="epochs for 'resnet44' is None"):
        plan.SweepPlan(epochs={"allcnnc": 1})


def test_recipe_epochs_come_from_the_experiment_configs(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "paper_allcnnc.yaml").write_text("# @package _global_\nepochs: 7\n")
    assert plan.recipe_epochs("allcnnc", tmp_path) == 7
    assert plan.recipe_epochs("resnet44", tmp_path) is None


def test_confirm_refuses_without_gpu_and_terminal(capsys):
    assert not plan.confirm(has_gpu=False, force=False, is_tty=False)
    assert "FORCE=1" in capsys.readouterr().err
    assert plan.confirm(has_gpu=False, force=True, is_tty=False)
    assert plan.confirm(has_gpu=True, force=False, is_tty=False)
    assert plan.confirm(has_gpu=False, force=False, is_tty=True, ask=lambda prompt: "y")
    assert not plan.confirm(has_gpu=False, force=False, is_tty=True, ask=lambda prompt: "")


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


def test_plan_cli_goes_on_with_force(cpu_only, monkeypatch):
    monkeypatch.setenv("FORCE", "1")
    assert plan.main(["--epochs", "3"]) == 0


def test_plan_cli_bad_epochs_exits_2(cpu_only, capsys):
    assert plan.main(["--epochs", "0"]) == 2
    assert "epochs for 'allcnnc' is 0" in capsys.readouterr().err


def test_runs_that_differ_only_in_epochs_are_not_duplicates(tmp_path, tmp_path_factory):
    write_run(tmp_path / "smoke", epochs=2, final=30.0)
    write_run(tmp_path / "full", epochs=4, final=10.0)
    collection = collect_runs([tmp_path])
    assert sorted(collection.runs["epochs"]) == [2, 4] and collection.excluded.empty
    out = tmp_path_factory.mktemp("out")
    build_report([tmp_path], out)
    assert _png_is_drawn(out / "convergence.png")
    rows = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| All-CNN-C | z2 |")]
    assert [row.split("|")[3].strip() for row in rows[:2]] == ["2", "4"]
