"""Smoke and correctness tests of the benchmark code at tiny sizes (no timing assertions)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import models
from repro.bench import layers, machine, recipes, report, timing, training
from repro.bench.e2e import time_command
from repro.bench.escnn_anchor import build_escnn_conv, escnn_version
from repro.bench.suite import BenchOptions, run_bench
from repro.bench.variants import VARIANTS, LeanGConv

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def quiet(_: str) -> None:
    pass


# --- timing -------------------------------------------------------------------------------------------

def test_interleaved_timings_alternates_order_and_counts_rounds() -> None:
    calls: list[str] = []
    cands = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    result = timing.interleaved_timings(cands, rounds=4, warmup=1, device=CPU)
    assert list(result) == ["a", "b", "c"]
    assert all(len(t.samples_s) == 4 and t.inner == 1 for t in result.values())
    assert calls[:3] == ["a", "b", "c"]                      # warm-up
    assert calls[3:] == list("abc" "cba" "abc" "cba")         # rounds alternate direction


def test_calibrate_inner_reaches_min_sample() -> None:
    assert timing.calibrate_inner(lambda: None, 0.001, CPU) > 1
    assert timing.calibrate_inner(lambda: sum(range(10)), 0.0, CPU) == 1


def test_ratio_exact() -> None:
    a = timing.Timing("a", 1, [2.0, 4.0, 9.0])
    b = timing.Timing("b", 1, [1.0, 1.0, 3.0])
    r = timing.ratio(a, b)
    assert r["ratio_of_medians"] == 4.0 / 1.0
    assert r["median_round_ratio"] == 3.0                      # per round: 2, 4, 3
    assert r["ratio_of_minimums"] == 2.0


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"rounds": 1, "warmup": -1}])
def test_interleaved_timings_rejects_bad_counts(kwargs) -> None:
    with pytest.raises(ValueError, match="rounds"):
        timing.interleaved_timings({"a": lambda: None}, **kwargs)


def test_interleaved_timings_rejects_no_candidates() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        timing.interleaved_timings({}, rounds=1)


# --- layer cases ----------------------------------------------------------------------------------------

def test_default_cases_cover_the_issue_sizes() -> None:
    cases = layers.default_cases()
    by_size = {s: [c for c in cases if c.size == s] for s in layers.SIZES}
    assert len(by_size["tiny"]) == len(by_size["medium"]) == 4 and len(by_size["cifar"]) == 6
    assert {(c.batch, c.spatial) for c in by_size["tiny"]} == {(1, 8)}
    assert {(c.batch, c.spatial) for c in by_size["medium"]} == {(8, 16)}
    assert {c.batch for c in by_size["cifar"]} == {128}
    assert {(c.group, c.in_channels, c.spatial) for c in by_size["cifar"] if c.kind == "group"} == {
        ("p4", 48, 32), ("p4", 96, 16), ("p4m", 32, 32), ("p4m", 64, 16)}


def test_case_macs_exact() -> None:
    case = layers.LayerCase("tiny", "group", "p4m", 2, 3, 5, 8, kernel_size=3)
    assert case.macs == 2 * 64 * (5 * 8) * (3 * 8) * 9
    lifting = layers.LayerCase("tiny", "lifting", "p4", 1, 3, 5, 8)
    assert lifting.macs == 64 * (5 * 4) * 3 * 9


@pytest.mark.parametrize("field,value,match", [("size", "huge", "unknown size"),
                                               ("kind", "dense", "unknown layer kind"),
                                               ("group", "z2", "unknown group")])
def test_case_rejects_bad_values(field, value, match) -> None:
    kwargs = dict(size="tiny", kind="group", group="p4", batch=1, in_channels=2, out_channels=2, spatial=4)
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        layers.LayerCase(**kwargs)


def test_default_cases_rejects_unknown_size() -> None:
    with pytest.raises(ValueError, match="unknown size 'big'"):
        layers.default_cases(["big"])


@pytest.mark.parametrize("case", layers.default_cases(["tiny"]), ids=lambda c: c.name)
def test_plain_baseline_computes_the_layer_exactly(case) -> None:
    pair = layers.build_pair(case, CPU, dtype=torch.float64)
    assert torch.equal(pair.layer(pair.x).flatten(1, 2), pair.plain())
    assert pair.weight.shape == (case.out_channels * case.order, case.in_channels * case.in_order, 3, 3)


def test_bench_layer_case_row_structure() -> None:
    case = layers.default_cases(["tiny"])[1]
    for mode in layers.MODES:
        row = layers.bench_layer_case(case, mode, CPU, rounds=2, warmup=1, variants={"lean": VARIANTS["lean"]})
        assert row["mode"] == mode and row["size"] == "tiny" and row["macs"] == case.macs
        assert set(row["timings"]) == {"gcnn", "conv2d", "nn.Conv2d", "lean"}
        assert all(len(t["samples_s"]) == 2 and t["median_s"] > 0 for t in row["timings"].values())
        assert set(row["ratios"]) == {"gcnn", "nn.Conv2d", "lean"}


def test_layer_candidates_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match="unknown mode 'infer'"):
        layers.layer_candidates(layers.default_cases(["tiny"])[0], "infer", CPU)


# --- prototype variants -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("case", layers.default_cases(["tiny"]), ids=lambda c: c.name)
def test_variants_match_the_library_layer(name, case) -> None:
    pair = layers.build_pair(case, CPU, dtype=torch.float64)
    variant = VARIANTS[name](pair.layer)
    expected, got = pair.layer(pair.x), variant(pair.x)
    assert torch.equal(expected, got)
    grad = torch.randn_like(expected)
    params = list(pair.layer.parameters())
    g_expected = torch.autograd.grad(expected, params, grad)
    g_got = torch.autograd.grad(got, params, grad)
    for a, b in zip(g_expected, g_got):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_lean_variant_eval_cache_follows_weight_edits() -> None:
    pair = layers.build_pair(layers.default_cases(["tiny"])[1], CPU, requires_grad=False)
    variant = LeanGConv(pair.layer).eval()
    pair.layer.eval()
    with torch.no_grad():
        first = variant(pair.x)
        pair.layer.weight.mul_(2.0)
        second = variant(pair.x)
        assert torch.equal(second, pair.layer(pair.x))
    assert not torch.equal(first, second)


# --- escnn anchor -------------------------------------------------------------------------------------------

def test_escnn_anchor_rejects_unknown_group() -> None:
    with pytest.raises(ValueError, match="escnn anchor has no group 'z2'"):
        build_escnn_conv("z2", False, 2, 2)


@pytest.mark.skipif(escnn_version() is None, reason="escnn not installed (optional bench extra)")
@pytest.mark.parametrize("group,order", [("p4", 4), ("p4m", 8)])
def test_escnn_anchor_has_the_expanded_shape(group, order) -> None:
    conv = build_escnn_conv(group, lifting=False, in_channels=2, out_channels=3)
    assert conv(torch.randn(1, 2 * order, 6, 6)).shape == (1, 3 * order, 6, 6)


# --- machine ------------------------------------------------------------------------------------------------

def test_machine_description_and_slug() -> None:
    assert machine.resolve_device("cpu") == CPU
    assert machine.device_slug(CPU) == "cpu"
    info = machine.describe_machine(CPU)
    assert info["torch_threads"] == torch.get_num_threads() and info["torch_version"] == torch.__version__


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_resolve_device_rejects_unknown(name) -> None:
    with pytest.raises(ValueError, match="device"):
        machine.resolve_device(name)


def test_autocast_rejects_unknown_amp() -> None:
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        machine.autocast(CPU, "fp8")


# --- training ------------------------------------------------------------------------------------------------

def test_measure_training_reports_consistent_numbers() -> None:
    r = training.measure_training("rotmnist", "p4", CPU, batch=4, steps=2, warmup=1, width=0.5)
    model, shape = training.build_bench_model("rotmnist", "p4", 0.5)
    assert r.macs_per_image == models.count_macs(model, shape)
    assert r.params == models.count_parameters(model)
    assert len(r.step_samples_s) == 2 and r.images_per_s == pytest.approx(4 / r.step_s)
    assert r.gflops == pytest.approx(6 * r.macs_per_image * 4 / r.step_s / 1e9)
    assert r.peak_memory_bytes > 0 and r.memory_kind == "saved_for_backward+3x_params"


def test_saved_tensor_bytes_grow_with_the_group() -> None:
    def saved(group: str) -> int:
        torch.manual_seed(0)
        model, shape = training.build_bench_model("rotmnist", group, 0.5)
        x, y = torch.randn(2, *shape), torch.tensor([0, 1])
        return training.saved_tensor_bytes(model.train(), x, y, CPU)
    assert 0 < saved("z2") < saved("p4") < saved("p4m")


def test_measure_training_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="steps=0"):
        training.measure_training("rotmnist", "z2", CPU, steps=0)


def test_bench_training_ratio_to_z2() -> None:
    rows = training.bench_training(["rotmnist"], ["z2", "p4"], CPU, batch=2, steps=1, log=quiet)
    assert [r["group"] for r in rows] == ["z2", "p4"]
    assert rows[0]["speed_vs_z2"] == 1.0
    assert rows[1]["speed_vs_z2"] == pytest.approx(rows[1]["images_per_s"] / rows[0]["images_per_s"])


# --- recipes -------------------------------------------------------------------------------------------------

def test_mac_matched_width_matches_macs() -> None:
    width = recipes.mac_matched_width("rotmnist", "p4")
    shape = models.default_input_shape("rotmnist")
    target = models.count_macs(training.build_bench_model("rotmnist", "p4")[0], shape)
    got = models.count_macs(training.build_bench_model("rotmnist", "z2", width)[0], shape)
    assert width > 1.5 and abs(got / target - 1) < 0.1


def test_measure_recipe_extrapolates_the_epoch() -> None:
    recipe = recipes.Recipe("rotmnist", "p4", lr=0.01, momentum=0.9, weight_decay=0.0)
    row = recipes.measure_recipe(recipe, "p4", 0.5, CPU, batch=4, steps=2, warmup=1)
    assert row["epoch_extrapolated"] and row["epoch_s"] == pytest.approx(12_500 * row["step_s"])


def test_bench_recipes_rejects_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="unknown recipe 'vgg'"):
        recipes.bench_recipes(["vgg"], CPU, log=quiet)


# --- report --------------------------------------------------------------------------------------------------

def _row(size: str, mode: str, gcnn: float, escnn: float | None = None) -> dict:
    def r(v: float) -> dict:
        return {"ratio_of_medians": v, "median_round_ratio": v, "ratio_of_minimums": v}
    t = {"median_s": 1e-3, "min_s": 1e-3, "samples_s": [1e-3], "inner": 1, "name": "x"}
    row = {"size": size, "mode": mode, "name": f"{size}-{mode}", "macs": 10**9, "rounds": 1,
           "timings": {"conv2d": t, "gcnn": t}, "ratios": {"gcnn": r(gcnn)}}
    if escnn is not None:
        row["timings"]["escnn"] = t
        row["ratios"]["escnn"] = r(escnn)
        row["gcnn_vs_escnn"] = r(gcnn / escnn)
    return row


def test_targets_are_judged_from_measurements() -> None:
    results = {"meta": {"escnn_version": "1.0"},
               "layers": [_row("cifar", "train", 1.04, 2.0), _row("tiny", "train", 2.5, 5.0),
                          _row("tiny", "eval", 1.01, 0.5), _row("cifar", "eval", 1.06, 1.2)],
               "compile": {"layers": [{"graph_breaks": 0}, {"graph_breaks": 0}]},
               "e2e": {"demo": {"wall_s": 300.0, "returncode": 0}, "test": {"wall_s": 700.0, "returncode": 0}}}
    status = {t["target"]: t["status"] for t in report.evaluate_targets(results)}
    assert list(status.values()) == ["MET", "MISSED", "MISSED", "MISSED", "MET", "NOT MEASURED", "MET", "MISSED"]
    assert "2.020x" in report.evaluate_targets(results)[3]["measured"]   # tiny eval: 1.01 / 0.5


def test_targets_not_measured_without_data() -> None:
    statuses = {t["status"] for t in report.evaluate_targets({"meta": {}})}
    assert statuses == {"NOT MEASURED"}


def test_write_report_writes_markdown_and_json(tmp_path) -> None:
    results = {"meta": {"device_name": "test cpu", "escnn_version": None},
               "layers": [_row("tiny", "train", 1.5), _row("tiny", "eval", 1.0)]}
    md, js = report.write_report(results, tmp_path / "bench", report.report_stem("cpu", quick=True))
    assert md.name == "cpu-quick.md" and js.name == "cpu-quick.json"
    text = md.read_text()
    assert "# Benchmark: test cpu" in text and "## Targets" in text and "## Layer overhead" in text
    assert "escnn not installed" in text
    assert json.loads(js.read_text())["targets"][1]["status"] == "MET"


# --- e2e, options, suite and CLI ----------------------------------------------------------------------------------

def test_time_command_runs_and_times() -> None:
    run = time_command([sys.executable, "-c", "print('hello')"])
    assert run["returncode"] == 0 and run["tail"] == "hello" and run["wall_s"] > 0


def test_time_command_timeout_and_empty() -> None:
    run = time_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)
    assert run["timed_out"] and run["returncode"] is None
    with pytest.raises(ValueError, match="non-empty command"):
        time_command([])


@pytest.mark.parametrize("kwargs,match", [({"amp": "fp16"}, "unknown amp mode"),
                                          ({"skip": ["gpu"]}, "unknown part"),
                                          ({"variants": ["fast"]}, "unknown variant"),
                                          ({"archs": ["vgg"]}, "unknown arch"),
                                          ({"groups": ["so2"]}, "unknown group")])
def test_bench_options_reject_bad_values(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        BenchOptions(**kwargs)


def test_run_bench_smallest(tmp_path) -> None:
    opts = BenchOptions(quick=True, sizes=["tiny"], rounds=1, min_sample_s=0.0, archs=["rotmnist"],
                        groups=["z2", "p4m"], train_batch=2, train_steps=1, skip=["compile"])
    results = run_bench(opts, CPU, log=quiet)
    assert len(results["layers"]) == 4 * 2 and len(results["training"]) == 2
    assert results["meta"]["torch_threads"] == torch.get_num_threads()
    assert "compile" not in results and "e2e" not in results


def test_cli_writes_the_report(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("bench_cli", ROOT / "scripts" / "bench.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--quick", "--sizes", "tiny", "--rounds", "1", "--archs", "rotmnist", "--groups", "p4",
                     "--train-batch", "2", "--train-steps", "1", "--skip", "compile",
                     "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "cpu-quick.json").read_text())
    assert data["meta"]["quick"] and len(data["targets"]) == len(report.TARGETS)
    assert (tmp_path / "cpu-quick.md").exists()


def test_merge_previous_carries_over_unmeasured_sections(tmp_path) -> None:
    old = {"meta": {"started_utc": "then"}, "layers": [_row("tiny", "train", 1.5)],
           "e2e": {"demo": {"wall_s": 1.0, "returncode": 0}}}
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(old))
    new = {"meta": {"notes": []}, "e2e": {"demo": {"wall_s": 2.0, "returncode": 0}}}
    merged = report.merge_previous(new, path)
    assert merged["layers"] == old["layers"] and merged["e2e"]["demo"]["wall_s"] == 2.0
    assert merged["meta"]["notes"] == ["section 'layers' carried over from the run started then"]
    assert report.merge_previous(new, tmp_path / "missing.json") is new


@pytest.mark.parametrize("argv,match", [(["--device", "gpu"], "unknown device 'gpu'"),
                                        (["--threads", "0"], "--threads must be >= 1"),
                                        (["--archs", "vgg"], "unknown arch 'vgg'")])
def test_cli_rejects_bad_arguments_with_one_line(argv, match) -> None:
    spec = importlib.util.spec_from_file_location("bench_cli", ROOT / "scripts" / "bench.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with pytest.raises(SystemExit, match=match):
        cli.main(argv)


def test_merge_keeps_when_each_section_was_measured_across_merges(tmp_path) -> None:
    path = tmp_path / "cpu.json"
    first = {"meta": {"started_utc": "t1"}, "layers": [_row("tiny", "train", 1.5)], "e2e": {"demo": {}}}
    path.write_text(json.dumps(report.merge_previous(first, tmp_path / "missing.json")))
    second = report.merge_previous({"meta": {"started_utc": "t2"}, "layers": []}, path)
    path.write_text(json.dumps(second))
    third = report.merge_previous({"meta": {"started_utc": "t3"}, "compile": {}}, path)
    assert third["meta"]["section_started"] == {"compile": "t3", "layers": "t2", "e2e": "t1"}
    assert "section 'e2e' carried over from the run started t1" in third["meta"]["notes"]
