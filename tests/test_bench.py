"""The benchmark code at tiny sizes (no timing assertions) and repro.device."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import run_script
import torch
from torch import nn

import gcnn
import models
from repro import device as dev
from repro.bench import layers, plain, report, timing, training
from repro.bench.report import Measured, Target, evaluate_targets

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
TINY_ALLCNNC = ("experiment=paper_allcnnc", "group=p4m", "model.width=0.125")


def quiet(_: str) -> None:
    pass






# --- repro.device -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "auto"] if not torch.cuda.is_available() else ["cpu"])
def test_resolve_device_cpu(name) -> None:
    assert dev.resolve_device(name) == CPU


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", None, "cpu:0"])
def test_resolve_device_rejects_unknown(name) -> None:
    with pytest.raises(ValueError, match=rf"device={name!r} is not valid; expected one of 'auto', 'cpu'"):
        dev.resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_refuses_cuda_without_it(name) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        dev.resolve_device(name)


def test_resolve_flag() -> None:
    assert dev.resolve_flag("auto", CPU) is False and dev.resolve_flag(True, CPU) is True
    with pytest.raises(ValueError, match="amp='yes' is not valid"):
        dev.resolve_flag("yes", CPU, "amp")


@pytest.mark.parametrize("device, compile, channels_last, expected", [
    ("cpu", "auto", "auto", (False, False)),    # the CPU default: eager, contiguous
    ("cuda", "auto", "auto", (True, True)),     # the CUDA default: compiled, channels_last
    ("cuda", False, "auto", (False, False)),    # eager on CUDA: channels_last was slower (H100)
    ("cuda", "auto", False, (True, False)),
    ("cpu", True, True, (True, True)),          # explicit values hold on any device
    ("cuda", False, True, (False, True)),
])
def test_resolve_speed_flags(device, compile, channels_last, expected) -> None:
    assert dev.resolve_speed_flags(compile, channels_last, torch.device(device)) == expected


def test_resolve_speed_flags_names_the_bad_key() -> None:
    with pytest.raises(ValueError, match="compile='on' is not valid"):
        dev.resolve_speed_flags("on", "auto", CPU)
    with pytest.raises(ValueError, match="channels_last='on' is not valid"):
        dev.resolve_speed_flags(False, "on", CPU)


def test_autocast_off_and_bf16() -> None:
    layer = nn.Linear(4, 4)
    for off in (None, "none"):
        with dev.autocast(CPU, off):
            assert layer(torch.randn(2, 4)).dtype == torch.float32
    with dev.autocast(CPU, "bfloat16"):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="amp_dtype='fp8' is not valid"):
        dev.autocast(CPU, "fp8")


def test_describe_machine_keeps_the_result_json_fields() -> None:
    info = dev.describe_machine(CPU, world_size=2)
    assert {"git_commit", "torch_version", "device", "world_size"} <= set(info)
    assert info["world_size"] == 2 and info["torch_version"] == torch.__version__
    assert info["device"] == f"cpu ({dev.cpu_model()})" and info["torch_threads"] == torch.get_num_threads()
    assert dev.device_slug(CPU) == "cpu"


# --- timing -------------------------------------------------------------------------------------------

def test_interleaved_timings_alternates_order_and_counts_rounds() -> None:
    calls: list[str] = []
    cands = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    result = timing.interleaved_timings(cands, rounds=4, warmup=1, device=CPU)
    assert list(result) == ["a", "b", "c"]
    assert all(len(t["samples_s"]) == 4 and t["inner"] == 1 for t in result.values())
    assert calls[:3] == ["a", "b", "c"]                      # warm-up
    assert calls[3:] == list("abc" "cba" "abc" "cba")         # rounds alternate direction


def test_calibrate_inner_reaches_min_sample() -> None:
    assert timing.calibrate_inner(lambda: None, 0.001, CPU) > 1
    assert timing.calibrate_inner(lambda: sum(range(10)), 0.0, CPU) == 1


def test_ratio_exact() -> None:
    def t(samples: list[float]) -> dict:
        return {"samples_s": samples, "median_s": sorted(samples)[1], "min_s": min(samples)}
    r = timing.ratio(t([2.0, 4.0, 9.0]), t([1.0, 1.0, 3.0]))
    assert r == {"ratio_of_medians": 4.0, "median_round_ratio": 3.0, "ratio_of_minimums": 2.0}


@pytest.mark.parametrize("kwargs,match", [({"rounds": 0}, "rounds"), ({"rounds": 1, "warmup": -1}, "rounds"),
                                          ({"rounds": 1, "candidates": {}}, "at least one candidate")])
def test_interleaved_timings_rejects_bad_arguments(kwargs, match) -> None:
    candidates = kwargs.pop("candidates", {"a": lambda: None})
    with pytest.raises(ValueError, match=match):
        timing.interleaved_timings(candidates, **kwargs)


# --- layer cases ----------------------------------------------------------------------------------------

def test_default_cases_cover_the_issue_sizes() -> None:
    by_size = {s: [c for c in layers.default_cases() if c.size == s] for s in layers.SIZES}
    assert len(by_size["tiny"]) == len(by_size["medium"]) == 4 and len(by_size["cifar"]) == 6
    assert {(c.batch, c.spatial) for c in by_size["tiny"]} == {(1, 8)}
    assert {(c.batch, c.spatial) for c in by_size["medium"]} == {(8, 16)}
    assert {(c.group, c.in_channels, c.spatial) for c in by_size["cifar"] if c.kind == "group"} == {
        ("p4", 48, 32), ("p4", 96, 16), ("p4m", 32, 32), ("p4m", 64, 16)}


def test_case_macs_exact() -> None:
    def macs(*case) -> int:
        return layers.bench_layer_case(layers.LayerCase(*case), "eval", CPU, rounds=1)["macs"]
    assert macs("tiny", "group", "p4m", 2, 3, 5, 8) == 2 * 64 * (5 * 8) * (3 * 8) * 9
    assert macs("tiny", "lifting", "p4", 1, 3, 5, 8) == 64 * (5 * 4) * 3 * 9


@pytest.mark.parametrize("field,value,match", [("size", "huge", "size='huge' is not valid"),
                                               ("kind", "dense", "kind='dense' is not valid"),
                                               ("group", "z2", "group='z2' is not valid")])
def test_case_rejects_bad_values(field, value, match) -> None:
    kwargs = dict(size="tiny", kind="group", group="p4", batch=1, in_channels=2, out_channels=2, spatial=4)
    with pytest.raises(ValueError, match=match):
        layers.LayerCase(**{**kwargs, field: value})


@pytest.mark.parametrize("case", layers.default_cases(["tiny"]), ids=lambda c: c.name)
def test_plain_conv2d_baseline_computes_the_layer_exactly(case) -> None:
    pair = layers.build_pair(case, CPU, dtype=torch.float64)
    assert torch.equal(pair.layer(pair.x).flatten(1, 2), pair.plain())
    order = gcnn.get_group(case.group).order
    in_order = 1 if case.kind == "lifting" else order
    assert pair.weight.shape == (case.out_channels * order, case.in_channels * in_order, 3, 3)


def test_bench_layer_case_row_structure() -> None:
    case = layers.default_cases(["tiny"])[1]
    for mode in layers.MODES:
        row = layers.bench_layer_case(case, mode, CPU, rounds=2, warmup=1)
        assert row["mode"] == mode and row["size"] == "tiny" and row["macs"] == 64 * (8 * 4) * (8 * 4) * 9
        assert set(row["timings"]) == {"gcnn", "conv2d", "nn.Conv2d"} and set(row["ratios"]) == {"gcnn", "nn.Conv2d"}
        assert all(len(t["samples_s"]) == 2 and t["median_s"] > 0 for t in row["timings"].values())
    with pytest.raises(ValueError, match="mode='infer' is not valid"):
        layers.bench_layer_case(case, "infer", CPU, rounds=1)


def test_escnn_anchor_rejects_unknown_group() -> None:
    with pytest.raises(ValueError, match="group='z2' is not valid"):
        layers.EscnnConv("z2", False, 2, 2)


@pytest.mark.skipif(layers.escnn_version() is None, reason="escnn not installed (optional bench extra)")
@pytest.mark.parametrize("group,order", [("p4", 4), ("p4m", 8)])
def test_escnn_anchor_has_the_expanded_shape(group, order) -> None:
    conv = layers.EscnnConv(group, lifting=False, in_channels=2, out_channels=3)
    assert conv(torch.randn(1, 2 * order, 6, 6)).shape == (1, 3 * order, 6, 6)


# --- the plain same-MAC network -----------------------------------------------------------------------------

def _z2(arch: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    shape = models.default_input_shape(arch)
    return models.build_model(arch, "z2", in_channels=shape[0], width=0.25, **overrides).double()


@pytest.mark.parametrize("arch,overrides", [("allcnnc", {}), ("resnet44", {}), ("resnet44", {"head": "reference"}),
                                            ("rotmnist", {})])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_plain_twin_computes_the_z2_network_exactly_on_4d_tensors(arch, overrides, mode) -> None:
    model = _z2(arch, **overrides).train(mode == "train")
    twin = plain.plain_twin(model)
    assert not any(isinstance(m, (gcnn.LiftingConv2d, gcnn.GroupConv2d, gcnn.GroupBatchNorm2d)) for m in twin.modules())
    dims = []
    hooks = [m.register_forward_hook(lambda m, i, o: dims.append(o.dim())) for m in twin.modules()]
    x = torch.randn(3, *models.default_input_shape(arch), dtype=torch.float64)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)                                   # the same dropout masks in train mode
    got = twin(x)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    assert max(dims) == 4 and twin.training == model.training
    if mode == "train":                                    # the same BN statistics were gathered
        bn = [m for m in model.modules() if isinstance(m, gcnn.GroupBatchNorm2d)]
        bn2 = [m for m in twin.modules() if isinstance(m, nn.BatchNorm2d)]
        torch.testing.assert_close(bn2[-1].running_var, bn[-1].running_var, rtol=0, atol=1e-12)


def test_plain_twin_rejects_a_group_network() -> None:
    with pytest.raises(ValueError, match="expected a z2 network"):
        plain.plain_twin(models.build_model("rotmnist", "p4", in_channels=1))


@pytest.mark.parametrize("arch,group", [("allcnnc", "p4m"), ("resnet44", "p4m"), ("rotmnist", "p4")])
def test_same_mac_width_matches_the_group_network(arch, group) -> None:
    shape = models.default_input_shape(arch)
    net, z2_width = plain.build_plain_same_macs(arch, group, width=0.5)
    target = models.count_macs(models.build_model(arch, group, in_channels=shape[0], width=0.5), shape)
    assert abs(models.count_macs(net, shape) / target - 1) < 0.03 and z2_width > 1.0


# --- training cases from the experiment configs ----------------------------------------------------------------

def test_train_case_rejects_an_unknown_network() -> None:
    with pytest.raises(ValueError, match="network='dense' is not valid"):
        training.TrainCase(TINY_ALLCNNC, "dense")


def test_experiment_cases() -> None:
    cases = training.experiment_cases(["rotmnist"], ["z2", "p4m"], extra=["seed=1", "compile=true"])
    assert [(c.overrides, c.network) for c in cases] == [
        (("experiment=rotmnist", "group=z2", "seed=1", "compile=true"), "gcnn"),
        (("experiment=rotmnist", "group=p4m", "seed=1", "compile=true"), "gcnn"),
        (("experiment=rotmnist", "group=p4m", "seed=1", "compile=true"), "plain")]
    assert cases[-1].name == "rotmnist p4m seed=1 compile=true plain same-MAC"


def test_measure_case_trains_what_the_experiment_config_says(one_thread) -> None:
    paper = training.measure_case(training.TrainCase(TINY_ALLCNNC), CPU, steps=2, warmup=1, batch=4)
    assert paper["optimizer"] == "SGD" and paper["optim"]["weight_decay"] == 1e-3 and paper["optim"]["lr"] == 0.01
    assert paper["epochs"] == 350 and paper["experiment"] == "paper_allcnnc"
    changed = training.measure_case(training.TrainCase((*TINY_ALLCNNC, "optim.weight_decay=0.123")), CPU,
                                    steps=1, warmup=1, batch=4)
    assert changed["optim"]["weight_decay"] == 0.123
    model, _ = training.build_network(training.TrainCase(TINY_ALLCNNC), training.load_case_config(
        training.TrainCase(TINY_ALLCNNC)))
    assert paper["macs_per_image"] == models.count_macs(model, (3, 32, 32))
    assert paper["params"] == models.count_parameters(model) and paper["width"] == 0.125
    assert paper["images_per_s"] == pytest.approx(4 / paper["step_s"])
    assert paper["epoch_s"] == pytest.approx(12_500 * paper["step_s"])
    assert paper["tflops"] == pytest.approx(6 * paper["macs_per_image"] * paper["images_per_s"] / 1e12)
    assert paper["compile_s"] is None and paper["peak_memory_bytes"] is None and paper["graphs"] == 0


def test_measure_cases_compare_with_the_plain_network(one_thread) -> None:
    cases = [training.TrainCase(TINY_ALLCNNC), training.TrainCase(TINY_ALLCNNC, "plain")]
    rows = training.add_speed_vs_plain(list(training.measure_cases(cases, CPU, steps=1, warmup=1, batch=2, log=quiet)))
    assert [r["group"] for r in rows] == ["p4m", "plain"] and rows[1]["speed_vs_plain"] == 1.0
    assert rows[0]["speed_vs_plain"] == pytest.approx(rows[0]["images_per_s"] / rows[1]["images_per_s"])
    assert abs(rows[1]["macs_per_image"] / rows[0]["macs_per_image"] - 1) < 0.1


# --- targets and report --------------------------------------------------------------------------------------

def test_evaluate_targets_is_generic() -> None:
    targets = [Target("a", "x", "<=", 1.0, "x"), Target("b", "y", ">=", 2.0), Target("c", "z", "==", 0)]
    records = evaluate_targets(targets, {"x": Measured(1.0, "here"), "y": Measured(1.5)})
    assert [r["met"] for r in records] == [True, False, None]
    assert records[0] == {"name": "a", "metric": "x", "limit": "<= 1x", "measured": 1.0, "unit": "x",
                          "where": "here", "met": True}
    with pytest.raises(ValueError, match="op='~' is not valid"):
        Target("d", "w", "~", 1.0)


def _row(size: str, mode: str, gcnn_ratio: float, escnn: float | None = None) -> dict:
    def r(v: float) -> dict:
        return {"ratio_of_medians": v, "median_round_ratio": v, "ratio_of_minimums": v}
    t = {"median_s": 1e-3, "min_s": 1e-3, "samples_s": [1e-3], "inner": 1, "name": "x"}
    row = {"size": size, "mode": mode, "name": f"{size}-{mode}", "macs": 10**9, "rounds": 1,
           "timings": {"conv2d": t, "gcnn": t}, "ratios": {"gcnn": r(gcnn_ratio)}}
    if escnn is not None:
        row["timings"]["escnn"] = t
        row["ratios"]["escnn"] = r(escnn)
        row["gcnn_vs_escnn"] = r(gcnn_ratio / escnn)
    return row


def _met(results: dict) -> dict:
    return {r["metric"]: r["met"] for r in evaluate_targets(report.TARGETS, report.measured_numbers(results))}


def test_bench_targets_are_judged_from_measurements() -> None:
    results = {"meta": {},
               "layers": [_row("cifar", "train", 1.04, 2.0), _row("tiny", "train", 2.5, 5.0),
                          _row("tiny", "eval", 1.01, 0.5), _row("cifar", "eval", 1.06, 1.2)],
               "training": [{"group": "p4m", "case": "c", "speed_vs_plain": 0.8}],
               "compile": {"layers": [{"graph_breaks": 0}, {"graph_breaks": 0}]},
               "e2e": {"demo": {"wall_s": 300.0, "returncode": 0}, "test": {"wall_s": 700.0, "returncode": 0}}}
    assert _met(results) == {"layer_train_cifar": True, "layer_train_tiny": False, "layer_eval": False,
                             "vs_escnn": False, "p4m_vs_plain": True, "layer_graph_breaks": True,
                             "models_not_compiled": None, "demo_exit": True, "demo_s": True, "test_exit": True,
                             "test_s": False}
    assert report.measured_numbers(results)["vs_escnn"].value == pytest.approx(1.01 / 0.5)
    assert set(_met({"meta": {}}).values()) == {None}


def test_escnn_target_is_judged_from_carried_over_rows(tmp_path) -> None:
    """Regression: a --merge run without escnn kept the escnn rows but called the target NOT MEASURED."""
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps({"meta": {"escnn_version": "1.0.11", "started_utc": "then"},
                                "layers": [_row("tiny", "eval", 1.0, 1.25)]}))
    merged = report.merge_previous({"meta": {"escnn_version": None, "notes": []}, "e2e": {}}, path)
    assert _met(merged)["vs_escnn"] is True


def test_write_report_writes_markdown_and_json(tmp_path) -> None:
    results = {"meta": {"device_name": "test cpu"}, "layers": [_row("tiny", "train", 1.5), _row("tiny", "eval", 1.0)]}
    md, js = report.write_report(results, tmp_path / "bench", "cpu-quick")
    assert md.name == "cpu-quick.md" and js.name == "cpu-quick.json"
    text = md.read_text()
    assert "# Benchmark: test cpu" in text and "## Targets" in text and "## Layer overhead" in text
    saved = {r["metric"]: r for r in json.loads(js.read_text())["targets"]}
    assert saved["layer_train_tiny"]["met"] is True and saved["layer_eval"]["measured"] == 1.0


def test_merge_previous_carries_over_unmeasured_sections(tmp_path) -> None:
    path = tmp_path / "cpu.json"
    first = {"meta": {"started_utc": "t1"}, "layers": [_row("tiny", "train", 1.5)], "e2e": {"demo": {}}}
    path.write_text(json.dumps(report.merge_previous(first, tmp_path / "missing.json")))
    second = report.merge_previous({"meta": {"started_utc": "t2"}, "layers": []}, path)
    assert second["meta"]["notes"] == ["section 'e2e' carried over from the run started t1"]
    path.write_text(json.dumps(second))
    third = report.merge_previous({"meta": {"started_utc": "t3"}, "compile": {}}, path)
    assert third["meta"]["section_started"] == {"compile": "t3", "layers": "t2", "e2e": "t1"}


# --- e2e, options, suite and CLI ----------------------------------------------------------------------------------

def test_time_command_runs_times_and_times_out() -> None:
    run = timing.time_command([sys.executable, "-c", "print('hello')"])
    assert run["returncode"] == 0 and run["tail"] == "hello" and run["wall_s"] > 0
    slow = timing.time_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)
    assert slow["timed_out"] and slow["returncode"] is None
    with pytest.raises(ValueError, match="non-empty command"):
        timing.time_command([])


@pytest.mark.parametrize("argv", [["--skip", "gpu"]])
def test_cli_rejects_unknown_choices(argv) -> None:
    done = run_script("bench", *argv)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_cli_writes_the_report(tmp_path) -> None:
    done = run_script("bench", "--quick", "--groups", "p4m", "--skip", "compile", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "cpu-quick.json").read_text())
    assert data["meta"]["quick"] and len(data["targets"]) == len(report.TARGETS)
    assert len(data["layers"]) == 8 * 2 and [r["group"] for r in data["training"]] == ["p4m", "plain"]
    assert data["meta"]["command"].startswith("python scripts/bench.py --quick")
    assert "## Training step" in (tmp_path / "cpu-quick.md").read_text()


@pytest.mark.parametrize("argv,match", [(["--device", "gpu"], "device='gpu' is not valid"),
                                        (["--groups", "so2"], "group='so2' is not valid"),
                                        (["--override", "seed"], "override='seed' is not valid")])
def test_cli_rejects_bad_arguments_with_one_line(argv, match) -> None:
    done = run_script("bench", *argv)
    assert done.returncode == 1 and re.search(match, done.stderr) and len(done.stderr.splitlines()) == 1


# --- CUDA path ----------------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_layer_pair_and_plain_twin_are_exact_on_cuda() -> None:
    cuda = torch.device("cuda")
    for case in layers.default_cases(["tiny"]):
        pair = layers.build_pair(case, cuda, dtype=torch.float64)
        torch.testing.assert_close(pair.layer(pair.x).flatten(1, 2), pair.plain(), rtol=0, atol=1e-10)
    model = _z2("resnet44").to(cuda).eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, device=cuda)
    torch.testing.assert_close(plain.plain_twin(model)(x), model(x), rtol=0, atol=1e-10)
    assert math.isfinite(dev.describe_machine(cuda)["gpu_memory_bytes"])


def test_the_epoch_bench_times_every_table1_network_and_writes_its_record(tmp_path):
    """The epoch bench at toy sizes (compile off): a row per network with positive timings, the ratio
    computed from them, and a report whose targets name each network."""
    from repro.bench.epoch import rotmnist_networks, run_epoch_bench
    assert list(rotmnist_networks()) == ["Z2CNN", "P4CNN", "P4MCNN", "P4CNN-RP"]
    results = run_epoch_bench(tmp_path, "test", networks=["P4CNN"], n_train=64, n_test=32, with_compile=False,
                              log=lambda line: None)
    [row] = results["epoch"]
    assert row["bare_epoch_s"] > 0 and row["train_s"] > 0 and row["eval_every"] == 25
    assert len(row["bare_samples_s"]) == len(row["trainer_samples_s"]) == 3  # after a warm-up epoch of each
    cadence = row["train_s"] + row["eval_s"] / 25 + row["recal_s"] / row["epochs"]
    assert row["ratio"] == pytest.approx(cadence / row["bare_epoch_s"])
    assert "P4CNN: trainer epoch vs bare loop" in (tmp_path / "cpu-rotmnist-epoch.md").read_text()
    with pytest.raises(ValueError, match="network='P5CNN' is not valid"):
        run_epoch_bench(tmp_path, "test", networks=["P5CNN"])
