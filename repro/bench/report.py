"""Targets and the written report: ``<out>/<device>.md`` and ``<out>/<device>.json``.

``results`` is the dict assembled by ``scripts/bench.py``: ``meta`` (machine,
torch version, threads, options), ``layers`` (rows of
:func:`repro.bench.layers.bench_layers`), ``training``, ``recipes``,
``compile`` (``layers`` / ``models`` rows) and ``e2e`` (name -> timed command).
Every target is judged from measured numbers only; one that was not measured
in this run is ``NOT MEASURED``, never assumed met.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from repro.io import write_json, write_text

__all__ = ["TARGETS", "SECTIONS", "evaluate_targets", "render_markdown", "write_report", "report_stem",
           "merge_previous"]

SECTIONS = ("layers", "training", "recipes", "compile", "e2e")

MET, MISSED, NOT_MEASURED = "MET", "MISSED", "NOT MEASURED"
E2E_LIMIT_S = 600.0


def _worst_layer_ratio(results: dict, mode: str, sizes: Iterable[str] | None,
                       key: str = "gcnn") -> tuple[float, str] | None:
    worst = None
    for row in results.get("layers", []):
        if row["mode"] != mode or (sizes is not None and row["size"] not in sizes):
            continue
        value = (row.get("gcnn_vs_escnn") if key == "escnn" else row["ratios"].get(key))
        if value is None:
            continue
        r = value["ratio_of_medians"]
        if worst is None or r > worst[0]:
            worst = (r, f"{row['size']} {mode} {row['name']}")
    return worst


def _ratio_target(name: str, limit: float, found: tuple[float, str] | None,
                  missing: str = "no such layer rows in this run") -> dict:
    if found is None:
        return {"target": name, "limit": f"<= {limit:g}x", "measured": missing, "status": NOT_MEASURED}
    value, where = found
    return {"target": name, "limit": f"<= {limit:g}x", "measured": f"{value:.3f}x (worst: {where})",
            "status": MET if value <= limit else MISSED}


def _escnn_target(results: dict) -> dict:
    name = "no size where gcnn is slower than escnn (train and eval)"
    if not results.get("meta", {}).get("escnn_version"):
        return {"target": name, "limit": "<= 1x", "measured": "escnn not installed", "status": NOT_MEASURED}
    worst = [w for w in (_worst_layer_ratio(results, m, None, "escnn") for m in ("train", "eval")) if w]
    return _ratio_target(name, 1.0, max(worst) if worst else None)


def _compile_layers_target(results: dict) -> dict:
    name = "G-conv layers compile without graph breaks (CPU, small size)"
    rows = results.get("compile", {}).get("layers", [])
    if not rows:
        return {"target": name, "limit": "0 breaks", "measured": "not run", "status": NOT_MEASURED}
    breaks = sum(r["graph_breaks"] for r in rows)
    return {"target": name, "limit": "0 breaks", "measured": f"{breaks} breaks in {len(rows)} layer traces",
            "status": MET if breaks == 0 else MISSED}


def _compile_models_target(results: dict) -> dict:
    name = "torch.compile of every model works"
    rows = results.get("compile", {}).get("models", [])
    if not rows:
        return {"target": name, "limit": "all models", "measured": "not run (--compile-models)",
                "status": NOT_MEASURED}
    bad = [f"{r['arch']}/{r['group']}" for r in rows if r["graph_breaks"] or not r.get("ok", True)]
    backend = rows[0].get("backend", "dynamo trace only")
    measured = f"{len(rows) - len(bad)}/{len(rows)} models whole-graph ({backend})"
    if bad:
        measured += "; failing: " + ", ".join(bad)
    return {"target": name, "limit": "all models", "measured": measured, "status": MISSED if bad else MET}


def _e2e_target(results: dict, key: str, label: str) -> dict:
    name = f"{label} under 10 minutes"
    run = results.get("e2e", {}).get(key)
    if run is None:
        return {"target": name, "limit": f"< {E2E_LIMIT_S:g} s", "measured": "not run (--e2e)",
                "status": NOT_MEASURED}
    ok = run["returncode"] == 0 and run["wall_s"] < E2E_LIMIT_S
    note = "" if run["returncode"] == 0 else f" (exit {run['returncode']})"
    return {"target": name, "limit": f"< {E2E_LIMIT_S:g} s", "measured": f"{run['wall_s']:.0f} s{note}",
            "status": MET if ok else MISSED}


TARGETS: list[Callable[[dict], dict]] = [
    lambda r: _ratio_target("train-mode overhead vs plain conv2d at CIFAR sizes", 1.05,
                            _worst_layer_ratio(r, "train", ["cifar"])),
    lambda r: _ratio_target("train-mode overhead vs plain conv2d at the tiny size", 2.0,
                            _worst_layer_ratio(r, "train", ["tiny"])),
    lambda r: _ratio_target("eval-mode overhead vs plain conv2d at every size", 1.05,
                            _worst_layer_ratio(r, "eval", None)),
    _escnn_target,
    _compile_layers_target,
    _compile_models_target,
    lambda r: _e2e_target(r, "demo", "`make demo`"),
    lambda r: _e2e_target(r, "test", "default test suite (`make test`)"),
]


def evaluate_targets(results: dict) -> list[dict]:
    """One row per target: ``target``, ``limit``, ``measured`` and ``status`` (MET / MISSED / NOT MEASURED)."""
    return [target(results) for target in TARGETS]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(timing: dict | None) -> str:
    return "-" if timing is None else f"{timing['median_s'] * 1e3:.3f}"


def _x(ratio: dict | None) -> str:
    if ratio is None:
        return "-"
    return (f"{ratio['ratio_of_medians']:.3f}x ({ratio['median_round_ratio']:.3f}; "
            f"{ratio['ratio_of_minimums']:.3f})")


def _layer_section(rows: list[dict]) -> str:
    extra = sorted({n for r in rows for n in r["ratios"]} - {"gcnn", "escnn"})
    header = (["size", "mode", "layer", "MMAC", "rounds", "conv2d ms", "gcnn ms", "gcnn / conv2d",
               "escnn ms", "escnn / conv2d", "gcnn / escnn"] + [f"{n} / conv2d" for n in extra])
    body = []
    for r in rows:
        t = r["timings"]
        body.append([r["size"], r["mode"], r["name"], f"{r['macs'] / 1e6:.3g}", str(r["rounds"]),
                     _ms(t["conv2d"]), _ms(t["gcnn"]), _x(r["ratios"].get("gcnn")), _ms(t.get("escnn")),
                     _x(r["ratios"].get("escnn")), _x(r.get("gcnn_vs_escnn"))]
                    + [_x(r["ratios"].get(n)) for n in extra])
    return ("## Layer overhead\n\nMedian time per call, candidates interleaved in rounds after warm-up. "
            "Ratios: ratio of medians (in brackets: median of per-round ratios; ratio of minimums); "
            "targets use the ratio of medians; lower is better, "
            "1x = the plain `conv2d` limit. Train = forward + backward (weight, bias and, for group "
            "layers, input gradients); eval = `eval()` under `no_grad` (cached bank).\n\n"
            + _table(header, body))


def _training_section(rows: list[dict]) -> str:
    header = ["arch", "group", "params", "MMAC / image", "batch", "steps", "step s", "images/s",
              "vs z2", "GFLOP/s", "peak MiB"]
    body = [[r["arch"], r["group"], f"{r['params']:,}", f"{r['macs_per_image'] / 1e6:.1f}", str(r["batch"]),
             str(r["steps"]), f"{r['step_s']:.3f}", f"{r['images_per_s']:.1f}",
             "-" if r.get("speed_vs_z2") is None else f"{r['speed_vs_z2']:.3f}x",
             f"{r['gflops']:.1f}", f"{r['peak_memory_bytes'] / 2**20:.1f}"] for r in rows]
    kinds = sorted({r["memory_kind"] for r in rows})
    return ("## Training throughput\n\nFull step (forward, cross-entropy, backward, SGD) on a fixed random "
            "batch; GFLOP/s counts 6 FLOP per MAC per image. `vs z2`: images/s relative to the z2 "
            f"network of the same arch. Peak memory: {', '.join(kinds)}.\n\n" + _table(header, body))


def _recipes_section(rows: list[dict]) -> str:
    header = ["recipe", "network", "width", "MMAC / image", "images/s", "epoch s", "G-CNN / z2"]
    body = []
    for r in rows:
        for label, net in (("G-CNN", r["gcnn"]), ("z2, same MACs", r["z2_mac_matched"])):
            epoch = f"{net['epoch_s']:.1f}" + (" (extrapolated)" if net["epoch_extrapolated"] else "")
            body.append([r["recipe"], f"{label} ({net['group']})", f"{net['width']:.3f}",
                         f"{net['macs_per_image'] / 1e6:.1f}", f"{net['images_per_s']:.1f}", epoch,
                         f"{r['speed_vs_z2']:.3f}x" if label == "G-CNN" else ""])
    return ("## Synthetic-data training recipes\n\nThe paper's recipes (SGD, crop+flip augmentation on "
            "device) on random CIFAR-shaped data, next to a z2 network of the same arch widened to the "
            "same MACs per image.\n\n" + _table(header, body))


def _compile_section(compiled: dict) -> str:
    parts = ["## torch.compile"]
    if compiled.get("layers"):
        rows = [[r["layer"], r["group"], r["mode"], str(r["graphs"]), str(r["graph_breaks"])]
                for r in compiled["layers"]]
        parts.append(_table(["layer", "group", "mode", "graphs", "graph breaks"], rows))
    if compiled.get("models"):
        rows = [[r["arch"], r["group"], str(r["graphs"]), str(r["graph_breaks"]), r.get("backend", "-"),
                 str(r.get("ok", "-"))] for r in compiled["models"]]
        parts.append(_table(["arch", "group", "graphs", "graph breaks", "backend", "matches eager"], rows))
    return "\n\n".join(parts)


def _e2e_section(e2e: dict) -> str:
    rows = [[name, f"`{run['command']}`", f"{run['wall_s']:.1f}", str(run["returncode"])]
            for name, run in e2e.items()]
    return "## End-to-end\n\n" + _table(["what", "command", "wall s", "exit code"], rows)


def _meta_section(meta: dict) -> str:
    keys = ["device_name", "device", "cpu_model", "cpu_count", "torch_threads", "torch_version",
            "python_version", "platform", "escnn_version", "amp", "quick", "started_utc", "wall_s",
            "load_average", "command"]
    rows = [[k, f"`{meta[k]}`" if k == "command" else str(meta[k])] for k in keys if k in meta]
    return "## Machine\n\n" + _table(["", "value"], rows)


def render_markdown(results: dict) -> str:
    """The whole report as Markdown: machine, targets, then one section per measurement."""
    meta = results.get("meta", {})
    targets = results.get("targets") or evaluate_targets(results)
    parts = [f"# Benchmark: {meta.get('device_name', 'unknown device')}",
             _meta_section(meta),
             "## Targets\n\n" + _table(["target", "limit", "measured", "status"],
                                       [[t["target"], t["limit"], t["measured"], f"**{t['status']}**"]
                                        for t in targets])]
    if meta.get("notes"):
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in meta["notes"]))
    if results.get("layers"):
        parts.append(_layer_section(results["layers"]))
    if results.get("training"):
        parts.append(_training_section(results["training"]))
    if results.get("recipes"):
        parts.append(_recipes_section(results["recipes"]))
    if results.get("compile"):
        parts.append(_compile_section(results["compile"]))
    if results.get("e2e"):
        parts.append(_e2e_section(results["e2e"]))
    return "\n\n".join(parts) + "\n"


def report_stem(device_slug: str, quick: bool) -> str:
    """``cpu`` / ``cuda-<gpu>``; a ``--quick`` smoke run gets ``-quick`` so it never overwrites a full run."""
    return f"{device_slug}-quick" if quick else device_slug


def merge_previous(results: dict, previous_json: str | Path) -> dict:
    """``results`` plus the sections of an earlier report (``previous_json``) that this run
    did not measure. ``meta["section_started"]`` records when each section was measured
    (carried over through any number of merges); each carried-over section is also
    named in ``meta["notes"]``."""
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
            meta.setdefault("notes", []).append(
                f"section '{section}' carried over from the run started {started}")
    return merged


def write_report(results: dict, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Evaluate the targets into ``results`` and write ``<stem>.md`` and ``<stem>.json`` atomically."""
    results["targets"] = evaluate_targets(results)
    out_dir = Path(out_dir)
    md = write_text(out_dir / f"{stem}.md", render_markdown(results))
    js = write_json(out_dir / f"{stem}.json", results)
    return md, js
