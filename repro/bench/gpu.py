"""The one-command check of a fresh GPU machine (``scripts/gpu_check.py``, ``make gpu-check``).

Three parts, in this order, each written to the report as soon as it is done (a run
cut short by its time limit still leaves every number measured so far):

* ``tests``: ``pytest -m cuda``, the tests that take the CUDA path;
* ``runs``: two-epoch ``paper_allcnnc`` / ``paper_resnet44`` p4m runs of the real
  trainer on a synthetic CIFAR-format folder (``repro.data.write_cifar_folder``),
  All-CNN-C with ``compile=true`` to count the trainer's compiles;
* ``bench``: the paper recipes of ``configs/experiment/`` as the trainer runs them
  (the config's autocast, layout and compile flag), p4m against the plain same-MAC
  network with compile off and on, and every group of ``make reproduce-table``;
  from these, the projected wall time of one paper run and of the whole table.

``CheckOptions.dry_run()`` is the same code at toy sizes on the CPU (under a minute),
which the default test suite runs.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from gcnn.validation import check_choice
from repro.device import describe_machine, device_slug, resolve_device
from repro.markdown import markdown_table

from .compile_check import dynamo_counts
from .report import PLAIN_SPEED_LIMIT, render_document, training_table, worst, write_report
from .targets import Measured, Target
from .timing import time_command
from .training import TrainCase, add_speed_vs_plain, experiment_cases, load_case_config, measure_case

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("tests", "runs", "bench")  # in this order: the slow compiled cases come last
# `make reproduce-table`: the groups of each experiment, x 2 augmentations (none, crop_flip) x 3 seeds.
REPRODUCE_TABLE = {"paper_allcnnc": ("z2", "p4", "p4m"), "paper_resnet44": ("z2", "p4m")}
REPRODUCE_TABLE_RUNS_PER_GROUP = 2 * 3
# Dense bf16 tensor-core peak (TFLOP/s) by a lower-case part of the GPU's name; first match wins.
PEAK_BF16_TFLOPS = (("h200", 989.0), ("h100 pcie", 756.0), ("h100 nvl", 835.0), ("h100", 989.0))
TIME_LIMIT_S = 480.0


@dataclass
class CheckOptions:
    """What the check runs; :meth:`dry_run` gives the CPU smoke sizes."""

    dry: bool = False
    device: str = "auto"
    parts: tuple[str, ...] = PARTS
    experiments: tuple[str, ...] = ("paper_allcnnc", "paper_resnet44")
    compile_experiments: tuple[str, ...] = ("paper_allcnnc", "paper_resnet44")  # p4m/plain also compiled
    overrides: tuple[str, ...] = ()           # added to every bench case
    batch: int | None = None                  # None: the config's batch size
    steps: int = 30
    warmup: int = 3
    compile_backend: str = "inductor"
    tests: tuple[str, ...] = ("tests",)
    tests_timeout_s: float = 240.0
    run_images: int = 4000                    # >= 4k: ZCA of 3072-dim images needs more images than dims
    run_test_images: int = 1000
    run_overrides: tuple[str, ...] = ()       # added to the 2-epoch runs
    run_compiled: tuple[str, ...] = ("paper_allcnnc",)   # experiments whose 2-epoch run uses compile=true
    threads: int | None = None                # torch.set_num_threads; None: torch's choice

    def __post_init__(self) -> None:
        for part in self.parts:
            check_choice("part", part, list(PARTS))

    @classmethod
    def dry_run(cls) -> "CheckOptions":
        """Toy sizes on the CPU: every code path in well under a minute."""
        tiny = ("model.width=0.125",)
        return cls(dry=True, device="cpu", threads=1, compile_experiments=("paper_allcnnc",), overrides=tiny,
                   batch=4, steps=1, warmup=1, compile_backend="eager", tests=("tests/test_gpu_check.py",),
                   tests_timeout_s=120.0, run_images=60, run_test_images=20, run_compiled=(),
                   run_overrides=(*tiny, "batch_size=16", "eval_batch_size=20", "equivariance_images=4",
                                  "data.preprocess=standardize"))


def peak_bf16_tflops(name: str) -> float | None:
    """The GPU's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`; None for any other device."""
    lowered = name.lower()
    return next((peak for part, peak in PEAK_BF16_TFLOPS if part in lowered), None)


def check_cases(opts: CheckOptions, configured: Mapping[str, bool]) -> list[TrainCase]:
    """Per experiment: every group of ``make reproduce-table`` and the plain same-MAC
    network with the config's own compile flag (``configured[experiment]``); then (last,
    as compiling is the slow part) p4m and plain with the flag flipped, for
    ``opts.compile_experiments``."""
    def cases(experiment: str, groups: Sequence[str], compiled: bool) -> list[TrainCase]:
        return experiment_cases([experiment], groups, (f"compile={str(compiled).lower()}", *opts.overrides))
    as_configured, flipped = [], []
    for experiment in opts.experiments:
        as_configured += cases(experiment, REPRODUCE_TABLE.get(experiment, ("p4m",)), configured[experiment])
        if experiment in opts.compile_experiments:
            flipped += cases(experiment, ("p4m",), not configured[experiment])
    return as_configured + flipped


def project_sweep(rows: Sequence[Mapping]) -> dict:
    """Projected wall time (training steps only) of one paper run per measured group and of
    ``make reproduce-table``: epochs x epoch time, summed over its runs. Uses the rows
    with the config's own compile flag; ``table_s`` is None unless every group was measured."""
    single = []
    for experiment, groups in REPRODUCE_TABLE.items():
        for group in groups:
            row = next((r for r in rows if r["experiment"] == experiment and r["group"] == group
                        and r["network"] == "gcnn" and r["compile"] == r.get("configured_compile", r["compile"])),
                       None)
            if row is not None:
                single.append({"experiment": experiment, "group": group, "epochs": row["epochs"],
                               "epoch_s": row["epoch_s"], "run_s": row["epochs"] * row["epoch_s"],
                               "compile": row["compile"]})
    complete = len(single) == sum(len(g) for g in REPRODUCE_TABLE.values())
    table_s = sum(r["run_s"] for r in single) * REPRODUCE_TABLE_RUNS_PER_GROUP if complete else None
    return {"runs": single, "table_s": table_s, "runs_per_group": REPRODUCE_TABLE_RUNS_PER_GROUP}


def _one_run(experiment: str, data_root: Path, run_dir: Path, device: torch.device,
             extra: Sequence[str]) -> dict:
    from repro.train import compose_config, run

    overrides = [f"experiment={experiment}", "group=p4m", "data=cifar_folder", f"data.root={data_root}",
                 "data.verify_checksums=false", "logger=none", "epochs=2", f"device={device}", *extra]
    torch._dynamo.reset()
    before, start, error, result = dynamo_counts(), time.perf_counter(), None, {}
    try:
        result = run(compose_config(overrides), run_dir=run_dir)
    except Exception as exc:  # noqa: BLE001 - a failed run is a measured outcome, reported with its error
        error = f"{type(exc).__name__}: {exc}"
    after, metrics = dynamo_counts(), run_dir / "metrics.jsonl"
    history = ([json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
               if metrics.exists() else [])
    return {"experiment": experiment, "overrides": overrides, "ok": error is None, "error": error,
            "wall_s": time.perf_counter() - start, "compile": "compile=true" in overrides,
            "epoch_time_s": [h.get("epoch_time_s") for h in history],
            "images_per_s": [h.get("images_per_s") for h in history],
            "final_test_error": result.get("final_test_error"),
            "graphs": after["graphs"] - before["graphs"],
            "graph_breaks": after["graph_breaks"] - before["graph_breaks"]}


def two_epoch_runs(opts: CheckOptions, device: torch.device, log: Callable[[str], None]) -> list[dict]:
    """Two-epoch p4m runs of every experiment through ``repro.train.run`` on a synthetic
    CIFAR10-format folder of ``opts.run_images`` training images; the experiments in
    ``opts.run_compiled`` with ``compile=true``, counting the graphs compiled."""
    from repro.data import write_cifar_folder

    rows = []
    with tempfile.TemporaryDirectory(prefix="gcnn-gpu-check-") as tmp:
        root = Path(tmp)
        write_cifar_folder(root / "data", "cifar10", n_train=opts.run_images, n_test=opts.run_test_images)
        for experiment in opts.experiments:
            log(f"two-epoch run: {experiment} p4m ({opts.run_images} synthetic images)")
            extra = (*opts.run_overrides, *(("compile=true",) if experiment in opts.run_compiled else ()))
            rows.append(_one_run(experiment, root / "data", root / experiment, device, extra))
            log(f"  ok={rows[-1]['ok']} wall {rows[-1]['wall_s']:.1f} s epochs {rows[-1]['epoch_time_s']}"
                + (f" error {rows[-1]['error']}" if rows[-1]["error"] else ""))
    return rows


def check_targets(experiments: Sequence[str]) -> list[Target]:
    """The issue's targets for these experiments, as data."""
    targets = [Target("CUDA-path tests (`pytest -m cuda`) exit code", "tests_exit", "==", 0)]
    for experiment in experiments:
        for compiled in ("false", "true"):
            targets.append(Target(f"{experiment} p4m images/s vs the plain same-MAC network, compile={compiled}",
                                  f"vs_plain:{experiment}:{compiled}", ">=", PLAIN_SPEED_LIMIT, "x"))
    return targets + [
        Target("graph breaks in the compiled training steps", "graph_breaks", "==", 0),
        Target("compiles per compiled training step (one shape)", "compiles_per_case", "<=", 1),
        Target("compiles in a 2-epoch trainer run with compile=true (train + eval shapes)", "run_compiles", "<=", 2),
        Target("2-epoch trainer runs that failed", "runs_failed", "==", 0),
        Target("parts of the check that crashed", "parts_crashed", "==", 0),
        Target("gpu_check wall time", "wall_s", "<", TIME_LIMIT_S, " s"),
    ]


def check_measured(results: Mapping) -> dict[str, Measured | None]:
    """The numbers :func:`check_targets` names, from the measured rows only."""
    tests, bench, runs = results.get("tests"), results.get("bench", []), results.get("runs")
    compiled = [r for r in bench if r["compile"]]
    compiled_runs = [r for r in runs or [] if r["compile"]]
    numbers: dict[str, Measured | None] = {
        "tests_exit": None if tests is None else Measured(-1 if tests["returncode"] is None else tests["returncode"],
                                                          tests["tail"].splitlines()[-1] if tests["tail"] else ""),
        "graph_breaks": Measured(sum(r["graph_breaks"] for r in compiled), f"{len(compiled)} cases")
        if compiled else None,
        "compiles_per_case": worst((r["graphs"], r["case"]) for r in compiled),
        "run_compiles": worst((r["graphs"], r["experiment"]) for r in compiled_runs),
        "runs_failed": None if runs is None else Measured(sum(not r["ok"] for r in runs),
                                                           "; ".join(r["error"] for r in runs if r["error"])),
        "parts_crashed": Measured(len(results.get("crashed", {})), "; ".join(
            f"{part}: {error}" for part, error in results.get("crashed", {}).items())),
        "wall_s": None if "wall_s" not in results.get("meta", {}) else Measured(results["meta"]["wall_s"]),
    }
    for row in bench:
        if row["group"] == "p4m" and row.get("speed_vs_plain") is not None:
            key = f"vs_plain:{row['experiment']}:{str(row['compile']).lower()}"
            numbers[key] = Measured(row["speed_vs_plain"], f"{row['images_per_s']:.0f} img/s")
    return numbers


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
        return ", ".join("-" if v is None else f"{v:.1f}" for v in values) or "-"
    rows = [[r["experiment"], "ok" if r["ok"] else f"failed: {r['error']}", f"{r['wall_s']:.1f}",
             floats(r["epoch_time_s"]), floats(r["images_per_s"]),
             "-" if r["final_test_error"] is None else f"{r['final_test_error']:.2f}",
             r["graphs"] if r["compile"] else "-", r["graph_breaks"] if r["compile"] else "-"] for r in runs]
    return ("## Two-epoch trainer runs (p4m, synthetic CIFAR-format data)\n\n"
            + markdown_table(["experiment", "status", "wall s", "epoch s", "images/s", "test error %",
                              "graphs", "breaks"], rows))


def _tests_section(tests: Mapping) -> str:
    return ("## CUDA-path tests\n\n" + markdown_table(
        ["command", "exit code", "wall s", "last line"],
        [[f"`{tests['command']}`", tests["returncode"], f"{tests['wall_s']:.1f}",
          (tests["tail"].splitlines() or [""])[-1]]]))


def _bench_section(rows: Sequence[Mapping], peak: float | None) -> str:
    peak_text = "n/a (unknown GPU)" if peak is None else f"{peak:g} TFLOP/s"
    return ("## Training step of the paper recipes\n\nSynthetic data on the device; the config's "
            "autocast and layout. TFLOP/s counts 6 FLOP per MAC per image; dense bf16 peak of this "
            f"device: {peak_text}. `plain` = the z2 network in `nn.Conv2d`/`BatchNorm2d` widened to "
            "the p4m network's MACs; `vs plain` = images/s over its images/s.\n\n" + training_table(rows, peak))


def render_check(results: Mapping) -> str:
    """The check's report as markdown."""
    meta = results["meta"]
    render = {"tests": _tests_section, "bench": lambda rows: _bench_section(rows, meta.get("peak_bf16_tflops")),
              "projection": _projection_section, "runs": _runs_section}
    title = f"GPU check: {meta.get('device_name', 'unknown device')}" + (" (dry run)" if meta.get("dry") else "")
    return render_document(title, meta, results["targets"], [render[k](results[k]) for k in render if results.get(k)])


def run_check(opts: CheckOptions, out_dir: str | Path, command: str,
              log: Callable[[str], None] = print) -> dict:
    """Run the parts of ``opts`` and write ``<out_dir>/<device slug>[-dry].md`` and ``.json``
    after each step, so a run cut short still leaves its numbers."""
    start = time.perf_counter()
    device = resolve_device(opts.device)
    if opts.threads is not None:     # toy sizes on a shared CPU: more threads only wait on each other
        torch.set_num_threads(opts.threads)
    machine = describe_machine(device)
    peak = peak_bf16_tflops(machine["device_name"]) if device.type == "cuda" else None
    meta = {**machine, "command": command, "dry": opts.dry, "options": asdict(opts),
            "experiments": list(opts.experiments), "peak_bf16_tflops": peak,
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": []}
    results: dict = {"meta": meta, "crashed": {}}
    stem = device_slug(device) + ("-dry" if opts.dry else "")

    def save() -> None:
        meta["wall_s"] = round(time.perf_counter() - start, 1)
        if "bench" in results:
            results["projection"] = project_sweep(results["bench"])
        write_report(results, out_dir, stem, targets=check_targets(opts.experiments), measure=check_measured,
                     render=render_check)

    def tests() -> None:
        log(f"CUDA-path tests: pytest -m cuda {' '.join(opts.tests)}")
        # exit code 5 means that no test is marked cuda
        pytest = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *opts.tests]
        results["tests"] = time_command(pytest, cwd=REPO_ROOT, timeout_s=opts.tests_timeout_s)
        log(f"  exit {results['tests']['returncode']} in {results['tests']['wall_s']:.1f} s")

    def runs() -> None:
        results["runs"] = two_epoch_runs(opts, device, log)

    def bench() -> None:
        log("training step of the paper recipes")
        rows = results["bench"] = []
        configured = {e: bool(load_case_config(TrainCase((f"experiment={e}",))).compile) for e in opts.experiments}
        for case in check_cases(opts, configured):
            row = measure_case(case, device, steps=opts.steps, warmup=opts.warmup, batch=opts.batch,
                               compile_backend=opts.compile_backend)
            row["configured_compile"] = configured[row["experiment"]]
            rows.append(row)
            add_speed_vs_plain(rows)
            log(f"  {row['case']:60s} {row['images_per_s']:9.1f} img/s  epoch {row['epoch_s']:7.1f} s  "
                f"{row['tflops']:7.2f} TFLOP/s" + (f"  compile {row['compile_s']:.0f} s, {row['graphs']} graph(s), "
                                                  f"{row['graph_breaks']} break(s)" if row["compile"] else ""))
            save()

    for part, body in (("tests", tests), ("runs", runs), ("bench", bench)):
        if part in opts.parts:
            try:
                body()
            except Exception as exc:  # noqa: BLE001 - one crashed part must not cost the others' numbers
                results["crashed"][part] = "".join(traceback.format_exception_only(exc)).strip()
                log(f"  {part} crashed: {results['crashed'][part]}")
            save()
    return results
