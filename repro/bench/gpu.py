"""The one-command check of a fresh GPU machine (``make gpu-check``): ``tests`` (``pytest -m cuda``),
``runs`` (two-epoch p4m trainer runs on synthetic CIFAR-format data) and ``bench`` (the paper recipes
against the plain same-MAC networks, compile off and on, and the projected sweep time), the report
rewritten after each step. ``CheckOptions.dry_run()``: the same code at toy sizes on the CPU."""
from __future__ import annotations

import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from repro.device import REPO_ROOT, device_slug, resolve_device, resolve_flag
from repro.sweeps import PAPER_TABLE, SWEEPS

from .compile_check import dynamo_counts
from .report import PLAIN_SPEED_LIMIT, Measured, Target, new_results, worst, write_report
from .timing import time_command
from .training import TrainCase, add_speed_vs_plain, experiment_cases, load_case_config, measure_cases

PARTS = ("tests", "runs", "bench")  # in this order: the slow compiled cases come last
EXPERIMENTS = tuple(PAPER_TABLE)
# `make reproduce-table`: each group trains once per augmentation and seed of the table sweep
REPRODUCE_TABLE_RUNS_PER_GROUP = len(SWEEPS["table"].augments) * len(SWEEPS["table"].seeds)
TIME_LIMIT_S = 480.0
TESTS_TIMEOUT_S = 240.0
TINY = ("model.width=0.125",)


TARGETS = [
    Target("CUDA-path tests (`pytest -m cuda`) exit code", "tests_exit", "==", 0),
    *(Target(f"{experiment} p4m images/s vs the plain same-MAC network, compile={compiled}",
             f"vs_plain:{experiment}:{compiled}", ">=", PLAIN_SPEED_LIMIT, "x")
      for experiment in EXPERIMENTS for compiled in ("false", "true")),
    Target("graph breaks in the compiled training steps", "graph_breaks", "==", 0),
    Target("compiles per compiled training step (one shape)", "compiles_per_case", "<=", 1),
    Target("compiles in a 2-epoch trainer run with compile=true (train + eval shapes)", "run_compiles", "<=", 2),
    Target("2-epoch trainer runs that failed", "runs_failed", "==", 0),
    Target("parts of the check that crashed", "parts_crashed", "==", 0),
    Target("gpu_check wall time", "wall_s", "<", TIME_LIMIT_S, " s"),
]


@dataclass
class CheckOptions:
    """What the check runs; :meth:`dry_run` gives the CPU smoke sizes."""

    dry: bool = False
    device: str = "auto"
    parts: tuple[str, ...] = PARTS
    overrides: tuple[str, ...] = ()           # added to every bench case
    steps: int = 30
    warmup: int = 3
    compile_backend: str = "inductor"
    compile_experiments: tuple[str, ...] = EXPERIMENTS   # p4m and plain also measured with compile flipped
    tests: tuple[str, ...] = ("tests",)
    run_images: int = 4000                    # >= 4k: ZCA of 3072-dim images needs more images than dims
    run_overrides: tuple[str, ...] = ()       # added to the 2-epoch runs (compiled on CUDA: compile=auto)

    @classmethod
    def from_cli(cls, dry: bool = False, device: str | None = None, parts: Sequence[str] = (),
                 run_overrides: Sequence[str] = (), bench_overrides: Sequence[str] = ()) -> "CheckOptions":
        """The defaults (:meth:`dry_run` with ``dry``), the given device and parts, the overrides added."""
        opts = cls.dry_run() if dry else cls()
        return replace(opts, device=device or opts.device, parts=tuple(parts or opts.parts),
                       run_overrides=(*opts.run_overrides, *run_overrides),
                       overrides=(*opts.overrides, *bench_overrides))

    @classmethod
    def dry_run(cls) -> "CheckOptions":
        """Toy sizes on one CPU thread: every code path in well under a minute."""
        return cls(dry=True, device="cpu", overrides=(*TINY, "batch_size=4"), steps=1, warmup=1,
                   compile_backend="eager", compile_experiments=EXPERIMENTS[:1], tests=("tests/test_gpu_check.py",),
                   run_images=60, run_overrides=(*TINY, "batch_size=16", "eval_batch_size=20", "equivariance_images=4",
                                                  "data.preprocess=standardize"))


def check_cases(opts: CheckOptions, configured: Mapping[str, bool]) -> list[TrainCase]:
    """Per experiment, every group of ``make reproduce-table`` and the plain same-MAC network with
    the config's compile flag (``configured[experiment]``); then (last, compiling is the slow part)
    p4m and plain with the flag flipped, for ``opts.compile_experiments``."""
    def cases(experiment: str, groups: Sequence[str], compiled: bool) -> list[TrainCase]:
        return experiment_cases([experiment], groups, (f"compile={str(compiled).lower()}", *opts.overrides))
    as_configured, flipped = [], []
    for experiment in EXPERIMENTS:
        as_configured += cases(experiment, PAPER_TABLE[experiment], configured[experiment])
        if experiment in opts.compile_experiments:
            flipped += cases(experiment, ("p4m",), not configured[experiment])
    return as_configured + flipped


def project_sweep(rows: Sequence[Mapping]) -> dict:
    """Projected wall time (training steps only) of one paper run per measured group, from the rows
    with the config's own compile flag, and of ``make reproduce-table`` (None unless every group was
    measured): epochs x epoch time, summed over its runs."""
    single = []
    for experiment, groups in PAPER_TABLE.items():
        for group in groups:
            row = next((r for r in rows if r["experiment"] == experiment and r["group"] == group
                        and r["network"] == "gcnn" and r["compile"] == r["configured_compile"]), None)
            if row is not None:
                single.append({"experiment": experiment, "group": group, "epochs": row["epochs"],
                               "epoch_s": row["epoch_s"], "run_s": row["epochs"] * row["epoch_s"],
                               "compile": row["compile"]})
    complete = len(single) == sum(len(g) for g in PAPER_TABLE.values())
    table_s = sum(r["run_s"] for r in single) * REPRODUCE_TABLE_RUNS_PER_GROUP if complete else None
    return {"runs": single, "table_s": table_s, "runs_per_group": REPRODUCE_TABLE_RUNS_PER_GROUP}


def two_epoch_runs(opts: CheckOptions, device: torch.device, log: Callable[[str], None]) -> list[dict]:
    """Two-epoch p4m runs of every experiment through ``repro.train.run`` on a synthetic CIFAR10-format
    folder of ``opts.run_images`` training images, compiled where the config's ``compile`` resolves so."""
    from repro.data import write_cifar_folder
    from repro.train import compose_config, load_config, run
    from repro.train.run_folder import load_metrics

    rows = []
    with tempfile.TemporaryDirectory(prefix="gcnn-gpu-check-") as tmp:
        root = Path(tmp)
        write_cifar_folder(root / "data", "cifar10", n_train=opts.run_images, n_test=opts.run_images // 4)
        for experiment in EXPERIMENTS:
            log(f"two-epoch run: {experiment} p4m ({opts.run_images} synthetic images)")
            overrides = [f"experiment={experiment}", "group=p4m", "data=cifar_folder", f"data.root={root / 'data'}",
                         "data.verify_checksums=false", "logger=none", "epochs=2", f"device={device}",
                         *opts.run_overrides]
            torch._dynamo.reset()
            before, start, error, result, compiled = dynamo_counts(), time.perf_counter(), None, {}, False
            try:
                config = load_config(compose_config(overrides))
                compiled = resolve_flag(config.compile, device, "compile")  # as composed, "auto" resolved
                result = run(config, run_dir=root / experiment)
            except Exception as exc:  # noqa: BLE001 - a failed run is a measured outcome, reported with its error
                error = f"{type(exc).__name__}: {exc}"
            after, history = dynamo_counts(), load_metrics(root / experiment)
            rows.append({"experiment": experiment, "overrides": overrides, "ok": error is None, "error": error,
                         "wall_s": time.perf_counter() - start, "compile": compiled,
                         "epoch_time_s": [h.get("epoch_time_s") for h in history],
                         "images_per_s": [h.get("images_per_s") for h in history],
                         "final_test_error": result.get("final_test_error"),
                         "graphs": after["graphs"] - before["graphs"],
                         "graph_breaks": after["graph_breaks"] - before["graph_breaks"]})
            log(f"  ok={error is None} wall {rows[-1]['wall_s']:.1f} s epochs {rows[-1]['epoch_time_s']}"
                + (f" error {error}" if error else ""))
    return rows


def check_measured(results: Mapping) -> dict[str, Measured | None]:
    """The numbers the :data:`TARGETS` name, from the measured rows only."""
    tests, bench, runs = results.get("tests"), results.get("training", []), results.get("runs")
    compiled = [r for r in bench if r["compile"]]
    crashed = results.get("crashed", {})
    numbers: dict[str, Measured | None] = {
        "tests_exit": None if tests is None else Measured(-1 if tests["returncode"] is None else tests["returncode"],
                                                          tests["tail"].splitlines()[-1] if tests["tail"] else ""),
        "graph_breaks": Measured(sum(r["graph_breaks"] for r in compiled), f"{len(compiled)} cases")
        if compiled else None,
        "compiles_per_case": worst((r["graphs"], r["case"]) for r in compiled),
        "run_compiles": worst((r["graphs"], r["experiment"]) for r in runs or [] if r["compile"]),
        "runs_failed": None if runs is None else Measured(sum(not r["ok"] for r in runs),
                                                           "; ".join(r["error"] for r in runs if r["error"])),
        "parts_crashed": Measured(len(crashed), "; ".join(f"{part}: {error}" for part, error in crashed.items())),
        "wall_s": None if "wall_s" not in results.get("meta", {}) else Measured(results["meta"]["wall_s"]),
    }
    for row in bench:
        if row["group"] == "p4m" and row.get("speed_vs_plain") is not None:
            key = f"vs_plain:{row['experiment']}:{str(row['compile']).lower()}"
            numbers[key] = Measured(row["speed_vs_plain"], f"{row['images_per_s']:.0f} img/s")
    return numbers


def run_check(opts: CheckOptions, out_dir: str | Path, command: str,
              log: Callable[[str], None] = print) -> dict:
    """Run the parts of ``opts`` and write ``<out_dir>/<device slug>[-dry].md`` and ``.json``
    after each step, so a run cut short still leaves its numbers."""
    start, threads = time.perf_counter(), torch.get_num_threads()
    device = resolve_device(opts.device)
    if opts.dry:     # toy sizes on a shared CPU: more threads only wait on each other
        torch.set_num_threads(1)
    try:
        return _run_parts(opts, device, out_dir, command, log, start)
    finally:
        torch.set_num_threads(threads)


def _run_parts(opts: CheckOptions, device: torch.device, out_dir: str | Path, command: str,
               log: Callable[[str], None], start: float) -> dict:
    results = new_results(device, command, title="GPU check", dry=opts.dry, options=asdict(opts),
                          experiments=list(EXPERIMENTS))
    results["crashed"] = {}
    stem = device_slug(device) + ("-dry" if opts.dry else "")

    def save() -> None:
        results["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
        if "training" in results:
            results["projection"] = project_sweep(results["training"])
        write_report(results, out_dir, stem, targets=TARGETS, measure=check_measured)

    def tests() -> None:
        log(f"CUDA-path tests: pytest -m cuda {' '.join(opts.tests)}")
        # exit code 5 means that no test is marked cuda
        pytest = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *opts.tests]
        results["tests"] = time_command(pytest, cwd=REPO_ROOT, timeout_s=TESTS_TIMEOUT_S)
        log(f"  exit {results['tests']['returncode']} in {results['tests']['wall_s']:.1f} s")

    def runs() -> None:
        results["runs"] = two_epoch_runs(opts, device, log)

    def bench() -> None:
        log("training step of the paper recipes")
        rows = results["training"] = []
        configured = {e: resolve_flag(load_case_config(TrainCase((f"experiment={e}",))).compile, device, "compile")
                      for e in EXPERIMENTS}
        for row in measure_cases(check_cases(opts, configured), device, log=log, steps=opts.steps,
                                 warmup=opts.warmup, compile_backend=opts.compile_backend):
            row["configured_compile"] = configured[row["experiment"]]
            rows.append(row)
            add_speed_vs_plain(rows)
            save()

    bodies = {"tests": tests, "runs": runs, "bench": bench}
    for part in PARTS:
        if part in opts.parts:
            body = bodies[part]
            try:
                body()
            except Exception as exc:  # noqa: BLE001 - one crashed part must not cost the others' numbers
                results["crashed"][part] = "".join(traceback.format_exception_only(exc)).strip()
                log(f"  {part} crashed: {results['crashed'][part]}")
            save()
    return results
