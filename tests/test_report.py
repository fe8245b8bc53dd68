"""The report on synthetic run folders: exact numbers, honest aggregation (only seeds are
averaged), excluded runs, the paper Δ rule, data efficiency, robustness, figures, CLI, wandb."""
from __future__ import annotations

import copy
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from conftest import run_script

from repro.report import RunFileWarning, build_report, collect_runs, load_reference, recipe
from repro.report.plots import (GROUP_COLORS, _size_positions, convergence_figure, data_efficiency_figure,
                                robustness_figure)
from repro.report.recipe import short_difference
from repro.report.render import column_label, format_error
from repro.report.values import records_frame
from repro.report.table import (P4M_ELEMENTS, Crossing, convergence_summary, crossing_size, data_efficiency,
                                robustness_runs, robustness_summary, summarize)
from repro.train.identity import identity_hash, identity_items

ROOT = Path(__file__).resolve().parents[1]
FULL_SETS = {"digits_rot": 1000, "cifar10": 50_000, "cifar100": 50_000, "cifar_folder": 50_000}  # training images
REAL_PAPER_PRESET = recipe.paper_preset_items


def make_config(*, model: str = "allcnnc", group: str = "z2", augment: str = "none", data: str = "cifar10",
                train_size: int | None = None, seed: int = 0, epochs: int = 4,
                overrides: dict | None = None) -> dict:
    """A resolved config in the trainer's nested layout; ``overrides`` by dotted key."""
    config = {"data": {"name": data, "root": "data", "download": True, "verify_checksums": True,
                       "format": "cifar10", "preprocess": "zca", "train_size": train_size, "val_size": 0,
                       "seed": 0},
              "augment": {"name": augment, **({"pad": 2} if augment == "crop_flip" else {})},
              "model": {"name": model, "width": 1.0}, "group": {"name": group},
              "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.001},
              "logger": {"name": "csv", "project": "gcnn-repro"}, "seed": seed, "epochs": epochs,
              "batch_size": 128, "sweep_name": "sweep"}
    for key, value in (overrides or {}).items():
        *sections, leaf = key.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return config


def write_run(run_dir: Path, *, model: str = "allcnnc", group: str = "z2", augment: str = "none",
              data: str = "cifar10", train_size: int | None = None, seed: int = 0, epochs: int = 4,
              final: float = 10.0, equivariance: float = 0.5, finished: bool = True,
              epochs_done: int | None = None, status: str = "finished", mtime: float | None = None,
              config_file: bool = False, overrides: dict | None = None, config: dict | None = None,
              robustness: dict | None = None) -> Path:
    """A run directory in the trainer's format: test error falls linearly from
    ``final + 3 * (epochs - 1)`` to ``final`` (%), train loss = test error / 10; the
    result stores the resolved config (:func:`make_config` unless ``config`` is given)
    and its identity hash."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = epochs if epochs_done is None else epochs_done
    lines = []
    for epoch in range(1, done + 1):
        error = final + 3.0 * (epochs - epoch)
        lines.append(json.dumps({"epoch": epoch, "train_loss": error / 10, "train_error": error - 1,
                                 "test_loss": error / 9, "test_error": error, "lr": 0.01,
                                 "epoch_time_s": 1.0, "images_per_s": 100.0}))
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if config_file:  # what the trainer writes at its start
        (run_dir / "config.json").write_text(json.dumps(
            make_config(model=model, group=group, augment=augment, data=data, train_size=train_size,
                        seed=seed, epochs=epochs, overrides=overrides)))
    if finished:
        config = config or make_config(model=model, group=group, augment=augment, data=data,
                                       train_size=train_size, seed=seed, epochs=epochs, overrides=overrides)
        result = {"status": status, "model": model, "group": group, "augment": augment, "data": data,
                  "train_size": train_size, "seed": seed, "epochs": epochs, "final_test_error": final,
                  "best_test_error": final, "best_epoch": epochs, "final_train_loss": final / 10,
                  "params": 1000 + len(group), "macs": 50_000, "equivariance_error": equivariance,
                  "equivariance_group": "p4m" if group == "z2" else group, "config": config,
                  "identity": identity_hash(config), "steps": epochs * 8, "n_train": train_size or FULL_SETS[data],
                  "git_commit": "abc", "torch_version": "2.x", "device": "cpu", "wall_time_s": 12.0}
        if robustness is not None:
            result["robustness"] = robustness
        (run_dir / "result.json").write_text(json.dumps(result))
        if mtime is not None:
            os.utime(run_dir / "result.json", (mtime, mtime))
    return run_dir


@pytest.fixture(autouse=True)
def paper_preset_is_the_fixture_recipe(monkeypatch):
    """The paper presets, stubbed: :func:`make_config` with 4 epochs (seed aside). The
    real composition is checked by :func:`test_paper_delta_with_the_real_preset`."""
    def preset(name: str, group: str, augment: str, data: str) -> dict:
        return identity_items(make_config(model=name.removeprefix("paper_"), group=group, augment=augment,
                                          data=data))
    monkeypatch.setattr(recipe, "paper_preset_items", preset)


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
    write_run(root / "crashed", group="p4", epochs=5, epochs_done=2, finished=False, config_file=True)
    # Died before its first epoch: the config the trainer wrote at its start and nothing else.
    (root / "died-early").mkdir(parents=True)
    (root / "died-early" / "config.json").write_text(json.dumps(make_config(model="allcnnc", group="p4m", seed=2,
                                                                            epochs=5)))
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
    assert set(reasons) == {"crashed", "died-early", "failed", "old-copy", "corrupt"}
    assert reasons["crashed"][0] == "unfinished" and "reached epoch 2 of 5" in reasons["crashed"][1]
    assert reasons["died-early"][0] == "unfinished" and "before its first epoch" in reasons["died-early"][1]
    assert reasons["failed"][0] == "unfinished" and "'failed'" in reasons["failed"][1]
    assert "reached epoch 3 of 5" in reasons["failed"][1]
    assert reasons["old-copy"][0] == "duplicate" and "z2-none-0" in reasons["old-copy"][1]
    assert "same identity" in reasons["old-copy"][1]
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
    assert cells[:6] == ["All-CNN-C", "z2", "4 epochs", "1.0k", "1.37M", f"{mean:.2f} ± {std:.2f} (n=3)"]
    assert cells[6:9] == ["9.44", f"{mean - 9.44:+.2f}", "6.0e-01"]
    assert cells[9:11] == ["8.00 ± 1.41 (n=2)", "8.86"]
    assert "| 5.0e-01 (p4m) |" in markdown and "| 7.0e-01 (p4m) |" in markdown  # per-run equivariance
    assert "CIFAR10+" in markdown and "## Excluded runs (5)" in markdown
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


@pytest.mark.parametrize("key", ["final_test_error", "config"])
def test_result_without_required_keys_is_corrupt(tmp_path, key):
    run = write_run(tmp_path / "r")
    result = json.loads((run / "result.json").read_text())
    del result[key]
    (run / "result.json").write_text(json.dumps(result))
    with pytest.warns(RunFileWarning, match=f"lacks keys \\['{key}'\\]"):
        runs = collect_runs([tmp_path])
    assert runs.runs.empty and runs.excluded["status"].tolist() == ["corrupt"]


def test_a_diverged_run_is_excluded_with_where_it_diverged(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"ok-{seed}", seed=seed, final=10.0 + seed)
    diverged = write_run(tmp_path / "nan", seed=2, epochs_done=2)  # what the trainer leaves: status and where
    (diverged / "result.json").write_text(json.dumps({"status": "diverged", "epoch": 3, "step": 17,
                                                      **{k: v for k, v in make_config(seed=2).items()
                                                         if k in ("seed", "epochs")}}))
    report = build_report([tmp_path], tmp_path / "out")
    excluded = report.collection.excluded
    assert excluded["status"].tolist() == ["diverged"]
    assert excluded["reason"].iloc[0] == "diverged at epoch 3 step 17 (non-finite training loss)"
    assert report.summary["n"].tolist() == [2] and report.summary["test_error_mean"].tolist() == [10.5]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| nan | diverged | ?/?/?/? | ? | 2 | diverged at epoch 3 step 17 (non-finite training loss) |" in table


def test_epochs_without_an_evaluation_stay_out_of_the_curves(tmp_path):
    run = write_run(tmp_path / "r", epochs=4)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[::2]:  # eval_every=2: epochs 1 and 3 have no test_loss / test_error
        del row["test_loss"], row["test_error"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = build_report([tmp_path], tmp_path / "out")
    assert report.collection.curves["epoch"].tolist() == [2, 4]
    assert report.collection.curves["test_error"].notna().all()
    assert report.summary["test_error_mean"].tolist() == [10.0]


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
    positions, labels = _size_positions(panel.assign(n_train=None))
    assert positions[None] == 600.0 and labels[None] == "full"


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
    assert cifar.loc[("resnet44", "p4m", "crop_flip"), "preset"] == "paper_resnet44"


def test_bad_reference_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_reference(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("network,group\nallcnnc,z2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_reference(tmp_path / "bad.csv")


def test_missing_path_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        collect_runs([tmp_path / "nowhere"])


def test_cli_exits_2_with_a_clear_message_when_no_runs_are_found(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path / "empty"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "error: no runs found under" in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_builds_from_several_paths_and_prints_warnings(sweep, tmp_path):
    done = run_script("report", str(sweep / "multirun"), str(sweep / "single"), "--out", str(tmp_path / "out"))
    out, err = done.stdout, done.stderr
    assert done.returncode == 0 and "7 finished run(s) averaged, 5 excluded" in out
    assert "warning:" in err and "corrupt" in err
    assert (tmp_path / "out" / "table.md").exists()


def test_runs_that_differ_only_in_epochs_are_not_duplicates(tmp_path, tmp_path_factory):
    write_run(tmp_path / "smoke", epochs=2, final=30.0)
    write_run(tmp_path / "full", epochs=4, final=10.0)
    collection = collect_runs([tmp_path])
    assert sorted(collection.runs["epochs"]) == [2, 4] and collection.excluded.empty
    out = tmp_path_factory.mktemp("out")
    build_report([tmp_path], out)
    assert _png_is_drawn(out / "convergence.png")
    rows = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| All-CNN-C | z2 |")]
    assert [row.split("|")[3].strip() for row in rows[:2]] == ["2 epochs", "4 epochs"]


# --- honest aggregation: only seeds are averaged --------------------------------------------

def _three_seed_sweep(root: Path) -> None:
    for seed, final in [(0, 10.0), (1, 11.0), (2, 13.0)]:
        write_run(root / f"z2-{seed}", seed=seed, final=final, mtime=1_000_000)


def test_an_lr_ablation_is_its_own_row_not_a_duplicate(tmp_path):
    _three_seed_sweep(tmp_path / "sweep")
    write_run(tmp_path / "ablation", seed=0, final=30.0, overrides={"optim.lr": 0.01}, mtime=2_000_000)
    collection = collect_runs([tmp_path])
    assert collection.excluded.empty and len(collection.runs) == 4
    summary = summarize(collection.runs, load_reference()).set_index("variant")
    assert summary.loc["", "n"] == 3 and summary.loc["", "test_error_mean"] == pytest.approx(34 / 3, abs=1e-12)
    assert summary.loc["optim.lr=0.01", "n"] == 1 and summary.loc["optim.lr=0.01", "test_error_mean"] == 30.0


def test_a_preprocess_ablation_neither_replaces_seed_0_nor_joins_its_average(tmp_path):
    _three_seed_sweep(tmp_path / "sweep")
    write_run(tmp_path / "ablation", seed=0, final=85.0, overrides={"data.preprocess": "none"}, mtime=2_000_000)
    build_report([tmp_path], tmp_path / "out")
    markdown = (tmp_path / "out" / "table.md").read_text()
    rows = {line.split("|")[4].strip(): line for line in markdown.splitlines()
            if line.startswith("| All-CNN-C | z2 |")}
    mean, std = statistics.mean([10.0, 11.0, 13.0]), statistics.stdev([10.0, 11.0, 13.0])
    assert set(rows) == {"–", "data.preprocess=none"}
    assert f"{mean:.2f} ± {std:.2f} (n=3)" in rows["–"]
    assert "85.00 (n=1)" in rows["data.preprocess=none"]
    assert "## Excluded runs (0)" in markdown


def test_duplicates_share_identity_and_seed_and_the_newest_is_kept(tmp_path):
    write_run(tmp_path / "older", final=50.0, mtime=1_000_000)
    write_run(tmp_path / "newer", final=10.0, mtime=2_000_000)
    write_run(tmp_path / "other-seed", seed=1, final=12.0, mtime=500_000)
    collection = collect_runs([tmp_path])
    assert sorted(Path(p).name for p in collection.runs["path"]) == ["newer", "other-seed"]
    duplicate = collection.excluded.iloc[0]
    assert Path(duplicate["path"]).name == "older" and duplicate["status"] == "duplicate"
    assert "newer" in duplicate["reason"] and identity_hash(make_config()) in duplicate["reason"]


def test_variants_are_labelled_by_the_keys_that_differ_from_the_most_common_recipe(tmp_path):
    _three_seed_sweep(tmp_path)
    write_run(tmp_path / "two-keys", final=20.0, overrides={"optim.lr": 0.01, "optim.momentum": 0.0})
    write_run(tmp_path / "new-key", final=21.0, overrides={"label_smoothing": 0.1})
    labels = set(collect_runs([tmp_path]).runs["variant"])
    assert labels == {"", "optim.lr=0.01, optim.momentum=0.0", "label_smoothing=0.1"}


def test_cifar_folders_are_named_by_format_and_do_not_collide(tmp_path):
    for classes in (10, 100):
        write_run(tmp_path / f"folder{classes}", data="cifar_folder", final=float(classes),
                  overrides={"data.format": f"cifar{classes}", "data.preprocess": "zca"})
    report = build_report([tmp_path], tmp_path / "out")
    assert report.collection.excluded.empty and len(report.collection.runs) == 2
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "## folder (cifar10 format, 10 classes)" in markdown
    assert "## folder (cifar100 format, 100 classes)" in markdown
    assert "CIFAR_FOLDER" not in markdown


def test_a_job_that_died_before_epoch_1_is_listed_as_excluded(tmp_path):
    (tmp_path / "empty-metrics").mkdir()
    (tmp_path / "empty-metrics" / "metrics.jsonl").write_text("")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text(json.dumps(make_config(model="rotmnist")))
    build_report([tmp_path], tmp_path / "out")
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "## Excluded runs (2)" in markdown
    assert markdown.count("crashed or stopped before its first epoch ended") == 2


# --- the paper Δ only for the paper recipe ----------------------------------------------------

def test_paper_delta_only_where_the_recipe_is_the_paper_preset(tmp_path):
    write_run(tmp_path / "paper-0", final=9.0)
    write_run(tmp_path / "paper-1", seed=1, final=11.0)
    write_run(tmp_path / "lr", final=12.0, overrides={"optim.lr": 0.1})
    write_run(tmp_path / "many", group="p4m", final=8.0, epochs=2,
              overrides={"optim.lr": 0.1, "optim.momentum": 0.0, "batch_size": 64})
    summary = summarize(collect_runs([tmp_path]).runs, load_reference()).set_index(["group", "variant"])
    assert summary.loc[("z2", ""), "diff_vs_paper"] == pytest.approx(10.0 - 9.44, abs=1e-12)
    assert summary.loc[("z2", ""), "paper_recipe_keys"] == ""
    lr = summary.loc[("z2", "optim.lr=0.1")]
    assert math.isnan(lr["diff_vs_paper"]) and lr["paper_test_error"] == 9.44
    assert lr["paper_recipe_keys"] == "optim.lr" and lr["paper_recipe_diff"] == "optim.lr=0.1 (paper 0.05)"
    build_report([tmp_path], tmp_path / "out")
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "| 9.44 | +0.56 |" in markdown and "| 9.44 | recipe ≠ paper: optim.lr |" in markdown
    assert "recipe ≠ paper: batch_size, epochs, optim.lr +1 more" in markdown


def test_short_difference_names_three_keys_then_counts():
    assert short_difference(["a"]) == "a"
    assert short_difference(["a", "b", "c"]) == "a, b, c"
    assert short_difference(["a", "b", "c", "d", "e"]) == "a, b, c +2 more"


def test_paper_delta_with_the_real_preset(tmp_path, monkeypatch):
    """The real composition of experiment=paper_allcnnc: a run of that exact recipe gets
    the Δ; one with a different learning rate does not."""
    from repro.train import compose_config, load_config, to_dict
    monkeypatch.setattr(recipe, "paper_preset_items", REAL_PAPER_PRESET)
    preset = to_dict(load_config(compose_config(["experiment=paper_allcnnc", "group=p4m", "augment=crop_flip",
                                                 "data=cifar10"])))
    for seed in (1, 2):
        config = copy.deepcopy(preset) | {"seed": seed}
        config["data"] = dict(config["data"], root=f"/elsewhere/{seed}")  # a location key: ignored
        write_run(tmp_path / f"paper-{seed}", group="p4m", augment="crop_flip", seed=seed, final=7.0 + seed,
                  config=config)
    other = copy.deepcopy(preset)
    other["optim"] = dict(other["optim"], lr=0.123)
    write_run(tmp_path / "other", group="p4m", augment="crop_flip", final=5.0, config=other)
    summary = summarize(collect_runs([tmp_path]).runs, load_reference()).set_index("variant")
    assert summary.loc["", "diff_vs_paper"] == pytest.approx(8.5 - 7.04, abs=1e-12)
    assert summary.loc["optim.lr=0.123", "paper_recipe_keys"] == "optim.lr"


# --- figures: one epoch, data-efficiency axis -------------------------------------------------

def test_one_epoch_convergence_plot_has_a_sensible_axis(tmp_path):
    write_run(tmp_path / "r", epochs=1)
    figure = convergence_figure(collect_runs([tmp_path]).curves)
    axis = figure.axes[0]
    assert axis.get_xlim() == (0.5, 1.5) and list(axis.get_xticks()) == [1.0]


def _size_sweep(root: Path, errors: dict[str, dict]) -> None:
    """Two seeds (error ± 1) per group and size on digits_rot (1000 training images in full)."""
    for group, by_size in errors.items():
        for size, error in by_size.items():
            for seed, offset in [(0, -1.0), (1, 1.0)]:
                write_run(root / f"{group}-{size}-{seed}", model="rotmnist", group=group, data="digits_rot",
                          train_size=size, seed=seed, epochs=3, final=error + offset)


def test_data_efficiency_y_axis_never_passes_100(tmp_path):
    _size_sweep(tmp_path, {"z2": {50: 98.5, None: 20.0}, "p4": {50: 98.0, None: 10.0}})
    axis = data_efficiency_figure(summarize(collect_runs([tmp_path]).runs)).axes[0]
    assert axis.get_ylim()[1] <= 100.0 and axis.get_ylim()[0] >= 0.0


# --- data efficiency --------------------------------------------------------------------------

def test_crossing_size_interpolates_on_a_log_scale_of_size():
    crossing = crossing_size([100, 1000], [30.0, 10.0], 20.0)
    assert crossing.kind == "between" and crossing.size == pytest.approx(math.sqrt(100 * 1000), rel=1e-12)
    crossing = crossing_size([1000, 100, 300], [10.0, 30.0, 15.0], 20.0)  # unsorted input
    assert crossing.size == pytest.approx(100 * 3 ** (2 / 3), rel=1e-12)  # 2/3 of the way from 100 to 300
    assert crossing_size([100, 1000], [19.0, 10.0], 20.0) == Crossing("at_smallest", 100.0)
    assert crossing_size([100, 1000], [40.0, 25.0], 20.0) == Crossing("not_reached", None)
    # not monotonic: the first crossing from the smallest size up counts
    assert crossing_size([10, 100, 1000], [30.0, 10.0, 25.0], 20.0).size == pytest.approx(10 * 10 ** 0.5, rel=1e-12)


def test_data_efficiency_table_and_plot_by_hand(tmp_path):
    # z2 on the full 1000 images: 20 %. p4 crosses 20 % 2/3 of the way (in error) from 100 (30 %)
    # to 300 (15 %) images: 100 * 3**(2/3) = 208 images = 0.21x. p4m is below it already at 100.
    _size_sweep(tmp_path / "runs", {"z2": {100: 50.0, 300: 35.0, None: 20.0},
                                    "p4": {100: 30.0, 300: 15.0, None: 8.0},
                                    "p4m": {100: 18.0, 300: 12.0, None: 7.0}})
    report = build_report([tmp_path / "runs"], tmp_path / "out")
    table = report.efficiency.set_index("group")
    assert list(table.index) == ["p4", "p4m"]
    assert table.loc["p4", "z2_full_error"] == pytest.approx(20.0, abs=1e-12)
    assert table.loc["p4", "size_at_z2_full_error"] == pytest.approx(100 * 3 ** (2 / 3), rel=1e-12)
    assert table.loc["p4", "fraction_of_full"] == pytest.approx(0.1 * 3 ** (2 / 3), rel=1e-12)
    assert table.loc["p4", "text"] == "p4 needs 0.21x the data (208 of 1000 images)"
    assert table.loc["p4m", "crossing"] == "at_smallest" and table.loc["p4m", "fraction_of_full"] == 0.1
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "## Data efficiency" in markdown and "| 208 | 0.21x |" in markdown and "| ≤ 100 | ≤ 0.10x |" in markdown
    assert (tmp_path / "out" / "data_efficiency.csv").exists()
    axis = data_efficiency_figure(report.summary, report.efficiency).axes[0]
    assert any(list(line.get_ydata()) == [20.0, 20.0] and line.get_linestyle() == "--" for line in axis.lines)
    stars = [line for line in axis.lines if line.get_marker() == "*"]
    assert sorted(float(line.get_xdata()[0]) for line in stars) == pytest.approx([100.0, 100 * 3 ** (2 / 3)])


def test_no_data_efficiency_row_without_a_full_data_z2_run(tmp_path):
    _size_sweep(tmp_path, {"z2": {100: 50.0, 300: 35.0}, "p4": {100: 30.0, 300: 15.0}})
    assert data_efficiency(summarize(collect_runs([tmp_path]).runs)).empty


# --- robustness -------------------------------------------------------------------------------

def _robustness(base: float, flat: bool, rotations: bool) -> dict:
    """Error ``base`` on e; a non-invariant network gets worse by 10 per element index."""
    p4m = {name: base + (0.0 if flat else 10.0 * index) for index, name in enumerate(P4M_ELEMENTS)}
    result = {"p4m": p4m}
    if rotations:
        result["rotation"] = {str(angle): base + (0.0 if flat else angle / 10) for angle in range(0, 360, 15)}
    return result


def test_robustness_table_by_hand_and_figure(tmp_path):
    for seed, base in [(0, 10.0), (1, 12.0)]:
        write_run(tmp_path / f"z2-{seed}", model="rotmnist", data="digits_rot", seed=seed, final=base,
                  robustness=_robustness(base, flat=False, rotations=True))
        write_run(tmp_path / f"p4m-{seed}", model="rotmnist", group="p4m", data="digits_rot", seed=seed,
                  final=base - 5, robustness=_robustness(base - 5, flat=True, rotations=True))
    report = build_report([tmp_path], tmp_path / "out")
    summary = report.robustness.set_index(["group", "kind", "transform"])
    assert summary.loc[("z2", "p4m", "mr"), "mean"] == pytest.approx(11.0 + 50.0, abs=1e-12)
    assert summary.loc[("z2", "p4m", "mr"), "std"] == pytest.approx(statistics.stdev([10.0, 12.0]), abs=1e-12)
    assert summary.loc[("z2", "rotation", "90"), "mean"] == pytest.approx(20.0, abs=1e-12)
    assert summary.loc[("p4m", "p4m", "mr3"), "mean"] == pytest.approx(6.0, abs=1e-12)
    assert list(summary.loc["p4m"].loc["p4m"]["order"]) == list(range(8))
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "## Robustness" in markdown and "| e | r | r2 | r3 | m | mr | mr2 | mr3 |" in markdown
    z2_row = next(line for line in markdown.splitlines() if line.startswith("| RotMNIST-CNN | z2 | digits_rot"))
    assert "61.00 ± 1.41 (n=2)" in z2_row
    per_run = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert len(per_run) == 4 * (8 + 24)
    assert _png_is_drawn(tmp_path / "out" / "robustness.png")
    assert len(robustness_figure(report.robustness).axes) == 2  # p4m elements and 15-degree rotations


def test_cifar_robustness_has_only_the_p4m_panel(tmp_path):
    write_run(tmp_path / "r", robustness=_robustness(10.0, flat=False, rotations=False))
    summary = robustness_summary(robustness_runs(collect_runs([tmp_path]).runs))
    assert set(summary["kind"]) == {"p4m"} and len(robustness_figure(summary).axes) == 1


# --- wandb ------------------------------------------------------------------------------------

def test_wandb_logs_the_report_offline(tmp_path, wandb_offline):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"z2-{seed}", model="rotmnist", data="digits_rot", seed=seed,
                  final=10.0 + seed, overrides={"sweep_name": "my_sweep", "logger.project": "my_project"},
                  robustness=_robustness(10.0, flat=False, rotations=True))
    done = run_script("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--wandb")
    assert done.returncode == 0 and "wandb (offline): project my_project, group my_sweep" in done.stdout
    offline = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    records = b"".join(path.read_bytes() for path in offline[0].glob("*.wandb"))
    # wandb 0.31 has no Python reader for its record files; the protobuf strings are plain bytes
    for text in ("my_sweep", "my_project", "report", "table", "figures/convergence", "robustness/rotmnist/z2"):
        assert text.encode() in records, text
    assert list(offline[0].rglob("*.png")) and list(offline[0].rglob("*table*.json"))


def test_wandb_group_must_be_named_when_sweeps_disagree(tmp_path):
    write_run(tmp_path / "a", overrides={"sweep_name": "one"})
    write_run(tmp_path / "b", seed=1, overrides={"sweep_name": "two"})
    done = run_script("report", str(tmp_path), "--out", str(tmp_path / "out"), "--wandb")
    assert done.returncode == 2
    assert "error: the runs name 2 sweeps (one, two); give the wandb group with --wandb-group" in done.stderr


def test_cells_that_would_share_a_row_are_told_apart(tmp_path):
    # The most common recipe has a key the other lacks: the label of the other would be empty too.
    for seed in (0, 1):
        write_run(tmp_path / f"with-{seed}", seed=seed, overrides={"extra": 1})
    write_run(tmp_path / "without", final=20.0)
    runs = collect_runs([tmp_path]).runs
    assert dict(zip(runs["path"].map(lambda p: Path(p).name), runs["variant"])) == {
        "with-0": "extra=1", "with-1": "extra=1", "without": "extra=–"}


def test_budget_label_names_epochs_and_fixed_steps():
    assert recipe.budget_label({"epochs": 1}) == "1 epoch"
    assert recipe.budget_label({"epochs": 30, "steps_per_epoch": 8}) == "30 epochs x 8 steps"


def test_robustness_sizes_stay_whole_numbers_beside_full_set_runs():
    from repro.report.table import CELL_FIELDS

    base = {field: None for field in CELL_FIELDS} | {"path": "r", "seed": 0, "robustness": {"p4m": {"e": 10.0}}}
    rows = [base | {"train_size": 100}, base | {"train_size": None, "path": "s"}]
    runs = records_frame(rows, list(rows[0]), ("train_size",))  # as collect_runs builds the runs table
    assert list(robustness_runs(runs)["train_size"]) == [100, None]
    assert list(pd.DataFrame(rows)["train_size"].fillna(-1)) == [100.0, -1.0]  # what pandas alone would give


def test_csv_run_paths_name_no_machine_folder_inside_the_working_folder(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(RunFileWarning):
        build_report([sweep], "out")
    for name in ("runs.csv", "excluded.csv"):
        paths = pd.read_csv(tmp_path / "out" / name)["path"]
        assert len(paths) and not any(str(tmp_path) in p for p in paths), name
    assert "single/z2-cf-0" in set(pd.read_csv(tmp_path / "out" / "runs.csv")["path"])
    assert "multirun/2026-01-01/12-00-00/crashed" in set(pd.read_csv(tmp_path / "out" / "excluded.csv")["path"])


def write_table(folder: Path, cells: list[tuple[str, str, float, str]]) -> Path:
    """A report's table.csv with the cells ``(group, train_size, mean, std)`` of the rotmnist demo ("" = full / n=1)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["model,data_label,augment,group,train_size,budget,variant,n,test_error_mean,test_error_std"]
    lines += [f"rotmnist,digits_rot,none,{group},{size},20 epochs x 8 steps,,2,{mean},{std}"
              for group, size, mean, std in cells]
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_demo_is_compared_with_the_record_within_seed_noise(tmp_path):
    from repro.report.record import compare_cells, comparison_text, read_cells
    record = write_table(tmp_path / "record", [("z2", "100", 60.0, "1.0"), ("p4", "100", 40.0, "3.0"),
                                               ("p4", "", 20.0, "0.5"), ("p4m", "300", 30.0, "")])
    ours = write_table(tmp_path / "ours", [("z2", "100", 62.5, "1.0"), ("p4", "100", 44.0, "4.0"),
                                           ("p4", "", 20.1, "0.5"), ("p4m", "300", 30.0, "1.0"),
                                           ("z2", "50", 70.0, "1.0")])   # not in the record: left out
    rows = compare_cells(read_cells(ours), read_cells(record))
    # bound = 2 x sqrt((s1^2 + s2^2) / 2): z2 2.00 < 2.5 apart; p4 2 x sqrt(12.5) = 7.07 >= 4; full 1.00 >= 0.1
    assert [(r.key[3], r.key[4], r.within) for r in rows] == [("z2", "100", False), ("p4", "100", True),
                                                             ("p4", "", True), ("p4m", "300", None)]
    assert rows[1].bound == pytest.approx(2 * (12.5 ** 0.5))
    text = comparison_text(rows, "results/demo")
    assert text.startswith("Beside the committed record results/demo (within seed noise: |difference| <= 2 x")
    assert "| rotmnist | z2 | 100 | 62.50 | 60.00 | +2.50 | 2.00 | NO |" in text
    assert "| rotmnist | p4 | full | 20.10 | 20.00 | +0.10 | 1.00 | yes |" in text
    assert "| rotmnist | p4m | 300 | 30.00 | 30.00 | +0.00 | – | unknown (one seed) |" in text
    assert text.endswith("2 of 4 cells within seed noise.\n")
    assert "no cell in common" in comparison_text(compare_cells(read_cells(ours), {}), "results/demo")
    with pytest.raises(ValueError, match="table.csv does not exist"):
        read_cells(tmp_path / "nowhere")


def test_the_report_cli_prints_the_comparison(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"z2-{seed}", seed=seed, final=10.0 + seed)
    build_report([tmp_path / "runs"], tmp_path / "record")
    done = run_script("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                      "--compare-to", str(tmp_path / "record"))
    assert done.returncode == 0, done.stderr
    assert "| allcnnc | z2 | full | 10.50 | 10.50 | +0.00 | 1.41 | yes |" in done.stdout
