"""The GPU check (scripts/gpu_check.py): its CPU dry run end to end, and its pure parts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_script
import torch

from repro.bench import gpu, training
from repro.bench.report import evaluate_targets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_report(tmp_path_factory) -> tuple[Path, dict]:
    """One dry run of the whole check (module scope: it takes seconds); it gives the threads back."""
    out, threads = tmp_path_factory.mktemp("gpu_check"), torch.get_num_threads()
    gpu.run_check(gpu.CheckOptions.dry_run(), out, f"python3 scripts/gpu_check.py --dry --out {out}",
                  log=lambda line: None)
    assert torch.get_num_threads() == threads
    return out, json.loads((out / "cpu-dry.json").read_text())


def test_dry_run_writes_the_report_with_every_part(dry_report) -> None:
    out, data = dry_report
    assert sorted(p.name for p in out.iterdir()) == ["cpu-dry.json", "cpu-dry.md"]
    assert data["crashed"] == {}
    meta = data["meta"]
    assert meta["dry"] and meta["torch_version"] == torch.__version__ and meta["device"].startswith("cpu")
    assert meta["command"] == "python3 scripts/gpu_check.py --dry --out " + str(out)
    assert data["tests"]["returncode"] == 0, data["tests"]["tail"]
    text = (out / "cpu-dry.md").read_text()
    assert "CUDA-path tests (`pytest -m cuda`) exit code | == 0 | 0 (" in text   # with the last output line
    for heading in ("## Targets", "## Training step",
                    "## Projected wall time", "## Two-epoch trainer runs"):
        assert heading in text


def test_dry_run_measures_the_paper_recipes_against_plain(dry_report) -> None:
    rows = dry_report[1]["training"]
    names = {(r["experiment"], r["group"], r["compile"]) for r in rows}
    for experiment, groups in gpu.PAPER_TABLE.items():
        assert {(experiment, g, False) for g in (*groups, "plain")} <= names
    assert ("paper_allcnnc", "p4m", True) in names and ("paper_allcnnc", "plain", True) in names
    p4m = next(r for r in rows if r["group"] == "p4m" and r["experiment"] == "paper_resnet44")
    plain = next(r for r in rows if r["group"] == "plain" and r["experiment"] == "paper_resnet44")
    assert p4m["speed_vs_plain"] == pytest.approx(p4m["images_per_s"] / plain["images_per_s"])
    assert abs(plain["macs_per_image"] / p4m["macs_per_image"] - 1) < 0.15   # toy widths round coarsely
    assert p4m["optim"]["weight_decay"] == 1e-4 and p4m["optimizer"] == "SGD"   # configs/experiment value
    compiled = [r for r in rows if r["compile"]]
    assert [r["compile"] for r in rows] == sorted(r["compile"] for r in rows)   # the slow compiled cases last
    assert all(r["graphs"] == 1 and r["graph_breaks"] == 0 and r["compile_s"] is not None for r in compiled)


def test_dry_run_trains_two_epochs_and_judges_every_target(dry_report) -> None:
    data = dry_report[1]
    assert [r["experiment"] for r in data["runs"]] == ["paper_allcnnc", "paper_resnet44"]
    assert all(r["ok"] and len(r["epoch_time_s"]) == 2 for r in data["runs"]), data["runs"]
    records = {r["metric"]: r for r in data["targets"]}
    assert records["runs_failed"]["met"] is True and records["tests_exit"]["met"] is True
    assert records["graph_breaks"]["met"] is True and records["compiles_per_case"]["measured"] == 1
    assert records["run_compiles"]["met"] is None            # the runs were not compiled
    assert records["vs_plain:paper_resnet44:true"]["met"] is None   # compiled only for All-CNN-C in dry mode
    projection = data["projection"]
    assert projection["table_s"] == pytest.approx(6 * sum(r["run_s"] for r in projection["runs"]))
    assert {r["epochs"] for r in projection["runs"]} == {350, 300}


@pytest.mark.parametrize("name,peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H200", 989.0),
                                       ("NVIDIA H100 PCIe", 756.0), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_table(name, peak, monkeypatch) -> None:
    monkeypatch.setattr(training, "device_name", lambda device: name)
    assert training.peak_bf16_tflops(torch.device("cuda")) == peak
    assert training.peak_bf16_tflops(torch.device("cpu")) is None


def _row(experiment: str, group: str, compiled: bool, epoch_s: float, epochs: int) -> dict:
    return {"experiment": experiment, "group": group, "network": "gcnn", "compile": compiled,
            "configured_compile": False, "epoch_s": epoch_s, "epochs": epochs}


def test_project_sweep_sums_epochs_times_epoch_time_over_the_table() -> None:
    rows = [_row("paper_allcnnc", g, False, 10.0, 350) for g in ("z2", "p4", "p4m")]
    rows += [_row("paper_resnet44", g, False, 20.0, 300) for g in ("z2", "p4m")]
    rows.append(_row("paper_resnet44", "p4m", True, 1.0, 300))          # not the configured mode: ignored
    projection = gpu.project_sweep(rows)
    assert projection["table_s"] == 6 * (3 * 350 * 10.0 + 2 * 300 * 20.0)
    assert gpu.project_sweep(rows[:2])["table_s"] is None                 # incomplete: no total


def test_check_targets_judge_measured_numbers() -> None:
    results = {"meta": {"wall_s": 500.0},
               "tests": {"returncode": 0, "tail": "3 passed"},
               "training": [{"group": "p4m", "experiment": "paper_allcnnc", "compile": True, "speed_vs_plain": 0.7,
                          "images_per_s": 7.0, "graphs": 2, "graph_breaks": 0, "case": "c"}],
               "runs": [{"ok": False, "error": "RuntimeError: x", "compile": True, "graphs": 2,
                         "experiment": "paper_allcnnc"}]}
    met = {r["metric"]: r["met"] for r in evaluate_targets(gpu.TARGETS, gpu.check_measured(results))}
    assert met == {"tests_exit": True, "vs_plain:paper_allcnnc:false": None, "vs_plain:paper_allcnnc:true": False,
                   "vs_plain:paper_resnet44:false": None, "vs_plain:paper_resnet44:true": None, "graph_breaks": True,
                   "compiles_per_case": False, "run_compiles": True, "runs_failed": False, "parts_crashed": True,
                   "wall_s": False}


def test_cli_rejects_a_bad_part_and_device(tmp_path) -> None:
    done = run_script("gpu_check", "--parts", "gpu", "--out", str(tmp_path))
    assert done.returncode == 2 and "invalid choice: 'gpu'" in done.stderr
    done = run_script("gpu_check", "--dry", "--device", "tpu", "--parts", "tests", "--out", str(tmp_path))
    assert done.returncode == 1 and "device='tpu' is not valid" in done.stderr


def test_cli_overrides_reach_the_bench_cases_and_the_runs() -> None:
    opts = gpu.CheckOptions.from_cli(True, None, (), run_overrides=["seed=3"], bench_overrides=["channels_last=true"])
    dry = gpu.CheckOptions.dry_run()
    assert opts.overrides == (*dry.overrides, "channels_last=true")
    assert opts.run_overrides == (*dry.run_overrides, "seed=3")
    assert (opts.device, opts.parts) == ("cpu", gpu.PARTS)
    assert gpu.CheckOptions.from_cli(device="cuda:1", parts=["runs"]).device == "cuda:1"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paper_case_runs_on_cuda_in_bf16() -> None:
    from repro.bench.training import TrainCase, measure_case
    row = measure_case(TrainCase(("experiment=paper_allcnnc", "group=p4m", "model.width=0.25")),
                       torch.device("cuda"), steps=2, warmup=1, batch=32)
    assert row["amp_dtype"] == "bfloat16" and row["peak_memory_bytes"] > 0 and row["images_per_s"] > 0
