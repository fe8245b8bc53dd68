"""What the trainer costs over a bare PyTorch loop, per epoch, for the rotated-MNIST networks.

For each preset: the trainer's epoch (``repro.train.run`` as a user runs it: seeded batches,
augmentation, the train step, the divergence check, checkpoint and metrics every epoch, and the
test-set evaluation at the preset's ``eval_every`` cadence, amortised over its epochs) beside a bare
loop of the same model, batch, optimiser and augmentation that only steps: no evaluation, logging or
checkpoints. The trainer's epoch is the marginal wall time of a run one epoch longer,
``T(2 epochs) - T(1 epoch)``, so set-up and the final measurements cancel; the evaluation's cost
(BN re-estimation and the test pass) is the last metrics row's epoch time minus its training time.
The same process runs every side one after the other, on the same data; the bare loop reports the
median of its epochs. ``compile``: the bare loop's step, eager and ``torch.compile``'d, timed
interleaved on one batch, to say where compiling wins on this machine.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from gcnn.validation import check_choice

from .timing import interleaved_timings

__all__ = ["rotmnist_networks", "bare_loop_epochs", "trainer_epoch", "compile_speedup", "measure_preset",
           "run_epoch_bench", "epoch_section"]

def rotmnist_networks() -> dict[str, tuple[str, ...]]:
    """Table 1's networks (and the p4m version) by their paper names, each as the overrides that train
    it, from the one definition of the sweep (:data:`repro.sweeps.ROTMNIST_TABLE`)."""
    import models
    from repro.sweeps import ROTMNIST_TABLE, recipe
    return {models.paper_name(recipe(preset).model.name, group): (f"experiment={preset}", f"group={group}")
            for preset, groups in ROTMNIST_TABLE.items() for group in groups}


def _sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_loop_epochs(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                     optimizer: torch.optim.Optimizer, augment: Callable[..., torch.Tensor],
                     epochs: int, seed: int = 0) -> list[float]:
    """Seconds of each of ``epochs`` plain training epochs: shuffle, augment, forward,
    cross-entropy, backward, optimiser step; nothing else."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for index in torch.randperm(len(images), generator=generator).split(batch_size):
            _sgd_step(model, optimizer, augment(images[index], generator), labels[index])
        seconds.append(time.perf_counter() - start)
    return seconds


def _timed_run(overrides: Sequence[str], run_dir: Path) -> tuple[float, list[dict[str, Any]]]:
    from repro.train import compose_config, run
    from repro.train.run_folder import METRICS
    start = time.perf_counter()
    run(compose_config(list(overrides)), run_dir=run_dir)
    seconds = time.perf_counter() - start
    return seconds, [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]


def trainer_epoch(overrides: Sequence[str], n_train: int, eval_every: int, work_dir: Path) -> dict[str, float]:
    """The trainer's seconds: ``train_s``, the marginal wall time of an epoch that does not evaluate;
    ``eval_s``, the evaluation's share of an evaluated epoch; ``epoch_s = train_s + eval_s / eval_every``,
    the mean epoch of a run at that cadence."""
    plain = [*overrides, "robustness=false", "logger=none"]
    short, _ = _timed_run([*plain, "epochs=1"], work_dir / "short")
    long, rows = _timed_run([*plain, "epochs=2", "eval_every=2"], work_dir / "long")
    last = rows[-1]
    eval_s = last["epoch_time_s"] - n_train / last["images_per_s"]
    train_s = long - short
    return {"train_s": train_s, "eval_s": eval_s, "epoch_s": train_s + eval_s / eval_every,
            "run_1_epoch_s": short, "run_2_epochs_s": long}


COMPILE_KEYS = ("eager_step_s", "compiled_step_s", "compile_s", "compiled_speedup")


def compile_speedup(model_factory: Callable[[], torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                    rounds: int = 5) -> dict[str, float]:
    """Median seconds of one bare training step, eager and compiled (inductor), timed interleaved
    after warm-up; ``compile_s``: the first compiled step (the compilation itself)."""
    eager, compiled = model_factory(), model_factory()
    compiled.load_state_dict(eager.state_dict())
    opt_eager, opt_compiled = (torch.optim.Adam(m.parameters(), 1e-3) for m in (eager, compiled))
    compiled_forward = torch.compile(compiled, dynamic=False)
    start = time.perf_counter()
    _sgd_step(compiled_forward, opt_compiled, x, y)
    compile_s = time.perf_counter() - start
    timings = interleaved_timings({"eager": lambda: _sgd_step(eager, opt_eager, x, y),
                                   "compiled": lambda: _sgd_step(compiled_forward, opt_compiled, x, y)},
                                  rounds=rounds, warmup=2)
    eager_s, compiled_s = timings["eager"]["median_s"], timings["compiled"]["median_s"]
    return {"eager_step_s": eager_s, "compiled_step_s": compiled_s, "compile_s": compile_s,
            "compiled_speedup": eager_s / compiled_s}


def measure_preset(name: str, overrides: Sequence[str], work_dir: Path, *, bare_epochs_before: int = 1,
                   with_compile: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One network: the trainer's epoch at its preset's cadence, the bare loop's (median of its epochs:
    ``bare_epochs_before`` after a warm-up epoch, then one after the trainer's runs), their ratio, and the
    compiled step's speed-up."""
    import models
    from repro.data import build_data
    from repro.train import compose_config, load_config
    from repro.train.config import build_option

    config = load_config(compose_config(list(overrides)))
    data = build_data(config.data)

    def build() -> torch.nn.Module:
        torch.manual_seed(config.seed)
        m = config.model
        return models.build_model(m.name, config.group.name, data.num_classes, in_channels=data.in_channels,
                                  width=m.width, **dict(m.overrides))

    model = build()
    optimizer = build_option("optim", config.optim, params=model.parameters())
    augment = build_option("augment", config.augment)

    def bare_epochs(epochs: int, seed: int) -> list[float]:
        return bare_loop_epochs(model, data.train_x, data.train_y, config.batch_size, optimizer, augment, epochs,
                                seed)

    bare = bare_epochs(1 + bare_epochs_before, config.seed)[1:]  # after a warm-up epoch
    trainer = trainer_epoch(overrides, len(data.train_y), config.eval_every, work_dir / name)
    bare += bare_epochs(1, config.seed + 1)  # once more after the trainer: drift of the machine cancels
    log(f"  {name}: bare loop epochs {', '.join(f'{s:.1f}' for s in bare)} s; trainer epoch "
        f"{trainer['train_s']:.1f} s + evaluation {trainer['eval_s']:.1f} s every {config.eval_every}")
    batch = data.train_x[: config.batch_size], data.train_y[: config.batch_size]
    compiled = compile_speedup(build, *batch) if with_compile else dict.fromkeys(COMPILE_KEYS)
    bare_s = statistics.median(bare)
    row = {"network": name, "overrides": list(overrides), "model": config.model.name, "group": config.group.name,
           "epochs": config.epochs, "eval_every": config.eval_every, "batch_size": config.batch_size,
           "n_train": len(data.train_y), "n_test": len(data.test_y), "bare_epoch_s": bare_s,
           "bare_samples_s": bare, **trainer, "ratio": trainer["epoch_s"] / bare_s, **compiled,
           "projected_run_s": config.epochs * trainer["epoch_s"]}
    log(f"  {name}: ratio {row['ratio']:.3f}x, projected run {row['projected_run_s'] / 3600:.2f} h"
        + (f", compiled step {compiled['compiled_speedup']:.2f}x eager (compile {compiled['compile_s']:.0f} s)"
           if with_compile else ""))
    return row


EPOCH_RATIO_LIMIT = 1.10   # the trainer's epoch (at the preset's cadence) over the bare loop's
EPOCH_NOTE = ("Synthetic MNIST-rot-format data, {n_train:,} train and {n_test:,} test images (MNIST-rot: 12,000 / "
              "50,000; timings do not depend on pixel values). Trainer epoch = T(2 epochs) - T(1 epoch) of "
              "repro.train.run "
              "(robustness and logging off: one-off or optional), plus the evaluation (BN re-estimation "
              "and the test pass) divided by eval_every. Bare loop: shuffle, augment, forward, loss, "
              "backward, Adam step; median of its epochs after a warm-up epoch.")


def run_epoch_bench(out_dir: str | Path, command: str, *, networks: Sequence[str] | None = None,
                    n_train: int = 12_000, n_test: int = 50_000, with_compile: bool = True,
                    log: Callable[[str], None] = print) -> dict:
    """Measure the :func:`rotmnist_networks` named in ``networks`` (None: all) on a synthetic folder of
    the given sizes; write ``<out_dir>/<device>-rotmnist-epoch.md`` and ``.json`` after each network."""
    import tempfile

    from repro.data import write_mnist_rot_folder
    from repro.device import device_slug

    from .report import Measured, Target, new_results, write_report

    table = rotmnist_networks()
    networks = list(table) if networks is None else list(networks)
    for name in networks:
        check_choice("network", name, list(table))
    device = torch.device("cpu")
    results = new_results(device, command, title="Rotated-MNIST epoch time, trainer vs bare loop",
                          n_train=n_train, n_test=n_test)
    results["meta"]["notes"].append(EPOCH_NOTE.format(n_train=n_train, n_test=n_test))
    results["epoch"] = []
    targets = [Target(f"{name}: trainer epoch vs bare loop", f"ratio:{name}", "<=", EPOCH_RATIO_LIMIT, "x")
               for name in networks]

    def measure(res: dict) -> dict[str, Measured | None]:
        return {f"ratio:{row['network']}": Measured(row["ratio"]) for row in res["epoch"]}

    with tempfile.TemporaryDirectory(prefix="gcnn-epoch-") as tmp:
        root = write_mnist_rot_folder(Path(tmp) / "data", n_train=n_train, n_test=n_test).parent
        data = [f"data.root={root}", "data.verify_checksums=false", "device=cpu"]
        for name in networks:
            log(f"{name} ({' '.join(table[name])})")
            results["epoch"].append(measure_preset(name, (*table[name], *data), Path(tmp) / "work",
                                                   with_compile=with_compile, log=log))
            write_report(results, out_dir, f"{device_slug(device)}-rotmnist-epoch", targets=targets, measure=measure)
    return results


def epoch_section(rows: Sequence[dict]) -> str:
    """The markdown section of :func:`run_epoch_bench`'s rows."""
    from repro.markdown import markdown_table
    header = ["network", "overrides", "epochs", "eval every", "bare epoch s", "trainer epoch s", "evaluation s",
              "trainer at cadence s", "ratio", "compiled step vs eager", "compile s", "projected run h"]
    body = [[r["network"], " ".join(r["overrides"][:2]), r["epochs"], r["eval_every"],
             f"{r['bare_epoch_s']:.2f}", f"{r['train_s']:.2f}", f"{r['eval_s']:.2f}", f"{r['epoch_s']:.2f}",
             f"{r['ratio']:.3f}x", "-" if r["compiled_speedup"] is None else f"{r['compiled_speedup']:.2f}x",
             "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}", f"{r['projected_run_s'] / 3600:.2f}"]
            for r in rows]
    return ("## Epoch time\n\nPer network at the batch of its preset. `ratio` = trainer at cadence / bare epoch. "
            "`compiled step vs eager` > 1 means torch.compile (inductor) trains faster on this CPU. "
            "Projected run = the preset's epochs x the trainer's epoch at cadence.\n\n" + markdown_table(header, body))
