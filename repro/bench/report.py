"""The benchmark's targets and its written report: ``<out>/<stem>.md`` and ``.json``.

``results`` is the dict of :func:`repro.bench.suite.run_bench`: ``meta`` (machine,
options), ``layers``, ``training``, ``compile`` (``layers`` / ``models`` rows) and
``e2e`` (name -> timed command). :func:`measured_numbers` reduces it to the numbers
the :data:`TARGETS` name; a number this run did not measure is ``None``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from repro.io import write_json, write_text
from repro.markdown import markdown_table

from .targets import Measured, Target, evaluate_targets, targets_table

SECTIONS = ("layers", "training", "compile", "e2e")
E2E_LIMIT_S = 600.0
PLAIN_SPEED_LIMIT = 1 / 1.3   # a p4m network at >= 1/1.3 of the images/s of the plain same-MAC network

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


def worst(pairs: Iterable[tuple[float, str]], *, largest: bool = True) -> Measured | None:
    """The largest (or smallest) ``(value, where)`` as :class:`Measured`; None if there is none."""
    found = (max if largest else min)(pairs, default=None)
    return None if found is None else Measured(*found)


def _layer_ratios(results: Mapping, mode: str, sizes: Sequence[str] | None, key: str) -> Measured | None:
    """Worst ratio of medians of ``key`` (``gcnn`` vs conv2d, or ``gcnn_vs_escnn``)."""
    pairs = []
    for row in results.get("layers", []):
        if (mode is None or row["mode"] == mode) and (sizes is None or row["size"] in sizes):
            ratio = row.get("gcnn_vs_escnn") if key == "escnn" else row["ratios"].get(key)
            if ratio is not None:
                pairs.append((ratio["ratio_of_medians"], f"{row['size']} {row['mode']} {row['name']}"))
    return worst(pairs)


def _e2e(results: Mapping, name: str) -> tuple[Measured | None, Measured | None]:
    run = results.get("e2e", {}).get(name)
    if run is None:
        return None, None
    code = -1 if run.get("returncode") is None else run["returncode"]   # None: killed after its timeout
    return Measured(code), Measured(run["wall_s"])


def _models_not_compiled(rows: Sequence[Mapping]) -> Measured | None:
    """How many models broke their graph or did not match eager, naming them."""
    if not rows:
        return None
    bad = [f"{r['arch']}/{r['group']}" for r in rows if r["graph_breaks"] or not r.get("ok", True)]
    return Measured(len(bad), ", ".join(bad) or f"{len(rows)} models, {rows[0].get('backend', 'trace only')}")


def measured_numbers(results: Mapping) -> dict[str, Measured | None]:
    """Every number a target of :data:`TARGETS` names, from the measured rows only."""
    compiled = results.get("compile", {})
    layer_rows, model_rows = compiled.get("layers", []), compiled.get("models", [])
    numbers = {
        "layer_train_cifar": _layer_ratios(results, "train", ["cifar"], "gcnn"),
        "layer_train_tiny": _layer_ratios(results, "train", ["tiny"], "gcnn"),
        "layer_eval": _layer_ratios(results, "eval", None, "gcnn"),
        "vs_escnn": _layer_ratios(results, None, None, "escnn"),
        "p4m_vs_plain": worst(((r["speed_vs_plain"], r["case"]) for r in results.get("training", [])
                               if r["group"] == "p4m" and r.get("speed_vs_plain") is not None), largest=False),
        "layer_graph_breaks": Measured(sum(r["graph_breaks"] for r in layer_rows), f"{len(layer_rows)} traces")
        if layer_rows else None,
        "models_not_compiled": _models_not_compiled(model_rows),
    }
    numbers["demo_exit"], numbers["demo_s"] = _e2e(results, "demo")
    numbers["test_exit"], numbers["test_s"] = _e2e(results, "test")
    return numbers


# ------------------------------------------------------------------ tables
def _ms(timing: Mapping | None) -> str:
    return "-" if timing is None else f"{timing['median_s'] * 1e3:.3f}"


def _x(ratio: Mapping | None) -> str:
    if ratio is None:
        return "-"
    return (f"{ratio['ratio_of_medians']:.3f}x ({ratio['median_round_ratio']:.3f}; "
            f"{ratio['ratio_of_minimums']:.3f})")


def _layer_section(rows: Sequence[Mapping]) -> str:
    header = ["size", "mode", "layer", "MMAC", "rounds", "conv2d ms", "gcnn ms", "gcnn / conv2d",
              "nn.Conv2d / conv2d", "escnn ms", "escnn / conv2d", "gcnn / escnn"]
    body = [[r["size"], r["mode"], r["name"], f"{r['macs'] / 1e6:.3g}", r["rounds"], _ms(r["timings"]["conv2d"]),
             _ms(r["timings"]["gcnn"]), _x(r["ratios"].get("gcnn")), _x(r["ratios"].get("nn.Conv2d")),
             _ms(r["timings"].get("escnn")), _x(r["ratios"].get("escnn")), _x(r.get("gcnn_vs_escnn"))]
            for r in rows]
    return ("## Layer overhead\n\nMedian time per call, candidates interleaved in rounds after warm-up. "
            "Ratios: ratio of medians (in brackets: median of per-round ratios; ratio of minimums); "
            "targets use the ratio of medians; lower is better, 1x = the plain `conv2d` on the "
            "pre-expanded bank. Train = forward + backward (weight, bias and, for group layers, input "
            "gradients); eval = `eval()` under `no_grad` (cached bank).\n\n" + markdown_table(header, body))


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def training_table(rows: Sequence[Mapping], peak_tflops: float | None = None) -> str:
    """One line per training case: network, MACs, speed, epoch time, TFLOP/s (and its share
    of ``peak_tflops`` when given), memory, compilation."""
    header = ["case", "network", "width", "params", "MMAC / image", "batch", "step ms", "images/s", "vs plain",
              "epoch s (50k)", "TFLOP/s", "% of bf16 peak", "peak MiB", "compile s", "graphs", "breaks"]
    body = [[r["case"], r["group"], f"{r['width']:.3f}", f"{r['params']:,}", f"{r['macs_per_image'] / 1e6:.1f}",
             r["batch"], f"{r['step_s'] * 1e3:.1f}", f"{r['images_per_s']:.1f}",
             _num(r.get("speed_vs_plain"), ".3f"), f"{r['epoch_s']:.1f}", f"{r['tflops']:.3f}",
             _num(None if peak_tflops is None else 100 * r["tflops"] / peak_tflops, ".1f"),
             _num(None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / 2**20, ".0f"),
             _num(r["compile_s"], ".1f"), r["graphs"] if r["compile"] else "-",
             r["graph_breaks"] if r["compile"] else "-"] for r in rows]
    if peak_tflops is None:
        header.pop(11)
        body = [row[:11] + row[12:] for row in body]
    return markdown_table(header, body)


def _training_section(rows: Sequence[Mapping]) -> str:
    return ("## Training step\n\nThe experiment configs (`configs/experiment/`) as `scripts/train.py` "
            "composes them: model, width, optimiser, augmentation, autocast, layout and compile flag. "
            "Synthetic data; median of the timed steps. `plain` = the z2 network in `nn.Conv2d` / "
            "`BatchNorm2d` on 4-D tensors, widened to the MACs of the p4m network; `vs plain` = "
            "images/s over that network's. TFLOP/s counts 6 FLOP per MAC per image; epoch = 50k "
            "images at this speed.\n\n" + training_table(rows))


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


MACHINE_KEYS = ("device_name", "device", "hostname", "cpu_model", "cpu_count", "torch_threads", "torch_version",
                "cuda_version", "cudnn_version", "python_version", "platform", "git_commit", "escnn_version",
                "started_utc", "wall_s", "command")


def render_document(title: str, meta: Mapping, records: Sequence[Mapping], sections: Sequence[str]) -> str:
    """A report (this one or the GPU check's): title, machine, targets, notes, then ``sections``."""
    machine = markdown_table(["", "value"], [[k, f"`{meta[k]}`" if k == "command" else meta[k]]
                                             for k in MACHINE_KEYS if meta.get(k) is not None])
    parts = [f"# {title}", "## Machine\n\n" + machine, "## Targets\n\n" + targets_table(records)]
    if meta.get("notes"):
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in meta["notes"]))
    return "\n\n".join(p.rstrip("\n") for p in [*parts, *sections]) + "\n"


def render_markdown(results: Mapping) -> str:
    """The benchmark's report: one section per measurement."""
    meta = results.get("meta", {})
    records = results.get("targets") or evaluate_targets(TARGETS, measured_numbers(results))
    render = {"layers": _layer_section, "training": _training_section, "compile": _compile_section,
              "e2e": _e2e_section}
    return render_document(f"Benchmark: {meta.get('device_name', 'unknown device')}", meta, records,
                           [render[s](results[s]) for s in SECTIONS if results.get(s)])


def merge_previous(results: dict, previous_json: str | Path) -> dict:
    """``results`` plus the sections of an earlier report (``previous_json``) that this run
    did not measure. ``meta["section_started"]`` records when each section was measured
    (carried through any number of merges); each carried-over section is named in
    ``meta["notes"]``. Targets are judged from the merged rows alone."""
    path = Path(previous_json)
    if not path.exists():
        return results
    previous = json.loads(path.read_text(encoding="utf-8"))
    previous_meta = previous.get("meta", {})
    origins = previous_meta.get("section_started", {})
    merged = dict(results)
    meta = merged["meta"]
    now = meta.get("started_utc", "unknown time")
    meta["section_started"] = {section: now for section in SECTIONS if section in results}
    for section in SECTIONS:
        if section not in results and section in previous:
            started = origins.get(section, previous_meta.get("started_utc", "unknown time"))
            merged[section] = previous[section]
            meta["section_started"][section] = started
            meta.setdefault("notes", []).append(f"section '{section}' carried over from the run started {started}")
    return merged


def write_report(results: dict, out_dir: str | Path, stem: str, *, targets: Sequence[Target] = TARGETS,
                 measure: Callable[[Mapping], Mapping] = measured_numbers,
                 render: Callable[[Mapping], str] = render_markdown) -> tuple[Path, Path]:
    """Judge ``targets`` by ``measure(results)`` into ``results["targets"]``; write ``render(results)``
    to ``<stem>.md`` and ``results`` to ``<stem>.json`` (the GPU check passes its own three)."""
    results["targets"] = evaluate_targets(targets, measure(results))
    out_dir = Path(out_dir)
    return (write_text(out_dir / f"{stem}.md", render(results)), write_json(out_dir / f"{stem}.json", results))
