"""The targets, as data, and the report ``<out>/<stem>.md`` and ``.json`` of the benchmark and the GPU check.

A number this run did not measure is ``None``: its target is "not measured", never assumed met.
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import torch

from gcnn.validation import check_choice
from repro.device import describe_machine
from repro.io import write_json, write_text
from repro.markdown import markdown_table

from .epoch import epoch_section
from .training import peak_bf16_tflops

SECTIONS = ("layers", "training", "compile", "e2e")   # the benchmark's, carried over by --merge
E2E_LIMIT_S = 600.0
PLAIN_SPEED_LIMIT = 1 / 1.3   # a p4m network at >= 1/1.3 of the images/s of the plain same-MAC network
_COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    """``name`` is met when ``measured[metric] <op> limit``; ``unit`` says what the number is."""

    name: str
    metric: str
    op: str
    limit: float
    unit: str = ""

    def __post_init__(self) -> None:
        check_choice("op", self.op, list(_COMPARISONS))


class Measured(NamedTuple):
    """A measured number and where it came from (e.g. the worst case's name)."""

    value: float
    where: str = ""


TARGETS = [
    Target("train-mode overhead vs plain conv2d at CIFAR sizes", "layer_train_cifar", "<=", 1.05, "x"),
    Target("train-mode overhead vs plain conv2d at the tiny size", "layer_train_tiny", "<=", 2.0, "x"),
    Target("eval-mode overhead vs plain conv2d at every size", "layer_eval", "<=", 1.05, "x"),
    Target("gcnn never slower than escnn (train and eval)", "vs_escnn", "<=", 1.0, "x"),
    Target("p4m training step vs the plain same-MAC network", "p4m_vs_plain", ">=", PLAIN_SPEED_LIMIT, "x"),
    Target("G-conv layers trace without graph breaks", "layer_graph_breaks", "==", 0, " breaks"),
    Target("models that do not compile to one graph matching eager", "models_not_compiled", "==", 0, ""),
    Target("`make demo` exit code", "demo_exit", "==", 0),
    Target("`make demo` wall time", "demo_s", "<", E2E_LIMIT_S, " s"),
    Target("default test suite (`make test`) exit code", "test_exit", "==", 0),
    Target("default test suite (`make test`) wall time", "test_s", "<", E2E_LIMIT_S, " s"),
]


def evaluate_targets(targets: Sequence[Target], measured: Mapping[str, Measured | None]) -> list[dict]:
    """One record per target: ``name``, ``metric``, ``limit`` (text), ``measured`` (number or None),
    ``unit``, ``where`` and ``met`` (True, False, or None when not measured)."""
    records = []
    for t in targets:
        found = measured.get(t.metric)
        records.append({"name": t.name, "metric": t.metric, "limit": f"{t.op} {t.limit:.4g}{t.unit}",
                        "measured": None if found is None else found.value, "unit": t.unit,
                        "where": "" if found is None else found.where,
                        "met": None if found is None else bool(_COMPARISONS[t.op](found.value, t.limit))})
    return records


def status(record: Mapping) -> str:
    """``met``, ``**missed**`` or ``not measured``."""
    return {True: "met", False: "**missed**", None: "not measured"}[record["met"]]


def print_targets(records: Iterable[Mapping]) -> None:
    """One line per target on stdout: status, name, measured number."""
    for record in records:
        print(f"{status(record).strip('*'):>12}  {record['name']}: {record['measured']}")


def worst(pairs: Iterable[tuple[float, str]], *, largest: bool = True) -> Measured | None:
    """The largest (or smallest) ``(value, where)``; None if there is none."""
    found = (max if largest else min)(pairs, default=None)
    return None if found is None else Measured(*found)


def _worst_layer_ratio(results: Mapping, escnn: bool = False, mode: str | None = None,
                       size: str | None = None) -> Measured | None:
    """Worst ratio of medians, gcnn vs conv2d (or vs escnn), over the rows of ``mode`` and ``size``."""
    pairs = []
    for row in results.get("layers", []):
        found = row.get("gcnn_vs_escnn") if escnn else row["ratios"]["gcnn"]
        if found is not None and mode in (None, row["mode"]) and size in (None, row["size"]):
            pairs.append((found["ratio_of_medians"], f"{row['size']} {row['mode']} {row['name']}"))
    return worst(pairs)


def _e2e(results: Mapping, name: str) -> tuple[Measured | None, Measured | None]:
    run = results.get("e2e", {}).get(name)
    if run is None:
        return None, None
    code = -1 if run.get("returncode") is None else run["returncode"]   # None: killed after its timeout
    return Measured(code), Measured(run["wall_s"])


def _models_not_compiled(rows: Sequence[Mapping] | None) -> Measured | None:
    """How many models broke their graph or did not match eager, naming them."""
    if not rows:
        return None
    bad = [f"{r['arch']}/{r['group']}" for r in rows if r["graph_breaks"] or not r.get("ok", True)]
    return Measured(len(bad), ", ".join(bad) or f"{len(rows)} models, {rows[0].get('backend', 'trace only')}")


def measured_numbers(results: Mapping) -> dict[str, Measured | None]:
    """Every number a target of :data:`TARGETS` names, from the measured rows only."""
    layer_rows = results.get("compile", {}).get("layers")
    numbers = {
        "layer_train_cifar": _worst_layer_ratio(results, mode="train", size="cifar"),
        "layer_train_tiny": _worst_layer_ratio(results, mode="train", size="tiny"),
        "layer_eval": _worst_layer_ratio(results, mode="eval"),
        "vs_escnn": _worst_layer_ratio(results, escnn=True),
        "p4m_vs_plain": worst(((r["speed_vs_plain"], r["case"]) for r in results.get("training", [])
                               if r["group"] == "p4m" and r.get("speed_vs_plain") is not None), largest=False),
        "layer_graph_breaks": Measured(sum(r["graph_breaks"] for r in layer_rows), f"{len(layer_rows)} traces")
        if layer_rows else None,
        "models_not_compiled": _models_not_compiled(results.get("compile", {}).get("models")),
    }
    numbers["demo_exit"], numbers["demo_s"] = _e2e(results, "demo")
    numbers["test_exit"], numbers["test_s"] = _e2e(results, "test")
    return numbers


# ------------------------------------------------------------------ markdown
def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ms(timing: Mapping | None) -> str:
    return "-" if timing is None else f"{timing['median_s'] * 1e3:.3f}"


def _x(ratio: Mapping | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio['ratio_of_medians']:.3f}x ({ratio['median_round_ratio']:.3f}; {ratio['ratio_of_minimums']:.3f})"


def _layer_section(rows: Sequence[Mapping]) -> str:
    header = ["size", "mode", "layer", "MMAC", "rounds", "conv2d ms", "gcnn ms", "gcnn / conv2d",
              "nn.Conv2d / conv2d", "escnn ms", "escnn / conv2d", "gcnn / escnn"]
    body = [[r["size"], r["mode"], r["name"], f"{r['macs'] / 1e6:.3g}", r["rounds"], _ms(r["timings"]["conv2d"]),
             _ms(r["timings"]["gcnn"]), _x(r["ratios"].get("gcnn")), _x(r["ratios"].get("nn.Conv2d")),
             _ms(r["timings"].get("escnn")), _x(r["ratios"].get("escnn")), _x(r.get("gcnn_vs_escnn"))]
            for r in rows]
    return ("## Layer overhead\n\nMedian time per call, candidates interleaved in rounds after warm-up. Ratios "
            "(lower is better; 1x = `conv2d` on the pre-expanded bank): ratio of medians, used by the targets "
            "(in brackets: median of per-round ratios; ratio of minimums). Train = forward + backward (weight, "
            "bias and, for group layers, input gradients); eval = `no_grad` (cached bank).\n\n"
            + markdown_table(header, body))


def _training_section(rows: Sequence[Mapping]) -> str:
    header = ["case", "network", "width", "params", "MMAC / image", "batch", "step ms", "images/s", "vs plain",
              "epoch s (50k)", "TFLOP/s", "% of bf16 peak", "peak MiB", "compile s", "graphs", "breaks"]
    body = [[r["case"], r["group"], f"{r['width']:.3f}", f"{r['params']:,}", f"{r['macs_per_image'] / 1e6:.1f}",
             r["batch"], f"{r['step_s'] * 1e3:.1f}", f"{r['images_per_s']:.1f}",
             _num(r.get("speed_vs_plain"), ".3f"), f"{r['epoch_s']:.1f}", f"{r['tflops']:.3f}",
             _num(r.get("percent_of_bf16_peak"), ".1f"),
             _num(None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / 2**20, ".0f"),
             _num(r["compile_s"], ".1f"), r["graphs"] if r["compile"] else "-",
             r["graph_breaks"] if r["compile"] else "-"] for r in rows]
    return ("## Training step\n\nThe experiment configs as `scripts/train.py` composes them, on synthetic "
            "data; median of the timed steps. `plain` = the z2 network in `nn.Conv2d` / `BatchNorm2d` on 4-D "
            "tensors, widened to the p4m network's MACs; `vs plain` = images/s over its images/s. TFLOP/s counts "
            "6 FLOP per MAC per image. Epoch = 50k images at this speed.\n\n" + markdown_table(header, body))


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.2f}"


def _projection_section(projection: Mapping) -> str:
    rows = [[r["experiment"], r["group"], r["compile"], r["epochs"], f"{r['epoch_s']:.1f}", _hours(r["run_s"])]
            for r in projection["runs"]]
    rows.append(["`make reproduce-table`", f"all x {projection['runs_per_group']} runs", "", "", "",
                 _hours(projection["table_s"])])
    return ("## Projected wall time\n\nTraining steps only (epochs x the epoch time above; evaluation, BN "
            "re-estimation and compilation come on top): one paper run per group, and `make "
            "reproduce-table` (every group x 2 augmentations x 3 seeds).\n\n"
            + markdown_table(["experiment", "group", "compile", "epochs", "epoch s", "hours"], rows))


def _runs_section(runs: Sequence[Mapping]) -> str:
    def floats(values: Sequence[float | None]) -> str:
        return ", ".join(_num(v, ".1f") for v in values) or "-"
    rows = [[r["experiment"], "ok" if r["ok"] else f"failed: {r['error']}", f"{r['wall_s']:.1f}",
             floats(r["epoch_time_s"]), floats(r["images_per_s"]), _num(r["final_test_error"], ".2f"),
             r["graphs"] if r["compile"] else "-", r["graph_breaks"] if r["compile"] else "-"] for r in runs]
    return "## Two-epoch trainer runs (p4m, synthetic CIFAR-format data)\n\n" + markdown_table(
        ["experiment", "status", "wall s", "epoch s", "images/s", "test error %", "graphs", "breaks"], rows)


def _compile_section(compiled: Mapping) -> str:
    parts = ["## torch.compile"]
    if compiled.get("layers"):
        parts.append(markdown_table(["layer", "group", "mode", "graphs", "graph breaks"],
                                    [[r["layer"], r["group"], r["mode"], r["graphs"], r["graph_breaks"]]
                                     for r in compiled["layers"]]))
    if compiled.get("models"):
        parts.append(markdown_table(["arch", "group", "graphs", "graph breaks", "backend", "matches eager"],
                                    [[r["arch"], r["group"], r["graphs"], r["graph_breaks"], r.get("backend", "-"),
                                      r.get("ok", "-")] for r in compiled["models"]]))
    return "\n\n".join(parts)


def _e2e_section(e2e: Mapping) -> str:
    rows = [[name, f"`{run['command']}`", f"{run['wall_s']:.1f}", run["returncode"]] for name, run in e2e.items()]
    return "## End-to-end\n\n" + markdown_table(["what", "command", "wall s", "exit code"], rows)


# a report's sections, in this order, each rendered when the results hold it
RENDERERS: dict[str, Callable[[Any], str]] = {
    "layers": _layer_section, "training": _training_section, "projection": _projection_section,
    "runs": _runs_section, "compile": _compile_section, "e2e": _e2e_section, "epoch": epoch_section}
MACHINE_KEYS = ("device_name", "device", "hostname", "cpu_model", "cpu_count", "torch_threads", "torch_version",
                "cuda_version", "cudnn_version", "python_version", "platform", "git_commit", "escnn_version",
                "peak_bf16_tflops", "started_utc", "wall_s", "command")


def _measured(record: Mapping) -> str:
    if record["measured"] is None:
        return "-"
    text = f"{record['measured']:.4g}{record['unit']}"
    return f"{text} ({record['where']})" if record["where"] else text


def render_markdown(results: Mapping) -> str:
    """The report: title, machine, targets, notes, then one section per measurement."""
    meta = results["meta"]
    title = f"{meta.get('title', 'Benchmark')}: {meta.get('device_name', 'unknown device')}"
    machine = markdown_table(["", "value"], [[k, f"`{meta[k]}`" if k == "command" else meta[k]]
                                             for k in MACHINE_KEYS if meta.get(k) is not None])
    targets = markdown_table(["target", "limit", "measured", "status"],
                             [[r["name"], r["limit"], _measured(r), status(r)] for r in results["targets"]])
    parts = [f"# {title}" + (" (dry run)" if meta.get("dry") else ""), "## Machine\n\n" + machine,
             "## Targets\n\n" + targets]
    if meta.get("notes"):
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in meta["notes"]))
    parts += [render(results[key]) for key, render in RENDERERS.items() if results.get(key)]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def new_results(device: torch.device, command: str, **meta: Any) -> dict:
    """Results that start with ``meta``: the machine (with its bf16 peak), ``command``, ``meta``, the start time."""
    return {"meta": {**describe_machine(device), "peak_bf16_tflops": peak_bf16_tflops(device), "command": command,
                     **meta, "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": []}}


def merge_previous(results: dict, previous_json: str | Path) -> dict:
    """``results`` plus the sections of an earlier report (``previous_json``) that this run did not
    measure. ``meta["section_started"]`` says when each section was measured (through any number of
    merges); ``meta["notes"]`` names each carried-over section. Targets are judged from the merged rows."""
    path = Path(previous_json)
    if not path.exists():
        return results
    previous = json.loads(path.read_text(encoding="utf-8"))
    origins = previous["meta"].get("section_started", {})
    meta = results["meta"]
    meta["section_started"] = {s: meta.get("started_utc", "unknown time") for s in SECTIONS if s in results}
    for section in SECTIONS:
        if section not in results and section in previous:
            started = origins.get(section, previous["meta"].get("started_utc", "unknown time"))
            results[section], meta["section_started"][section] = previous[section], started
            meta.setdefault("notes", []).append(f"section '{section}' carried over from the run started {started}")
    return results


def write_report(results: dict, out_dir: str | Path, stem: str, *, targets: Sequence[Target] = TARGETS,
                 measure: Callable[[Mapping], Mapping] = measured_numbers) -> tuple[Path, Path]:
    """Judge ``targets`` by ``measure(results)`` into ``results["targets"]``; write the markdown to
    ``<stem>.md`` and ``results`` to ``<stem>.json`` (the GPU check passes its own targets)."""
    results["targets"] = evaluate_targets(targets, measure(results))
    out_dir = Path(out_dir)
    return write_text(out_dir / f"{stem}.md", render_markdown(results)), write_json(out_dir / f"{stem}.json", results)
