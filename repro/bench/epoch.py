"""What the trainer costs over a bare PyTorch loop, per epoch, for the rotated-MNIST networks.

For each preset: the trainer's epoch (``repro.train.run`` as a user runs it: seeded batches,
augmentation, the train step, the divergence check, checkpoint and metrics every epoch, and the
test-set evaluation at the preset's ``eval_every`` cadence, amortised over its epochs) beside a bare
loop of the same model, batch, optimiser and augmentation that only steps: no evaluation, logging or
checkpoints. Both run in one process on the same data, one epoch of each in turn (see
:func:`measure_preset`); each side reports the median of its epochs. ``compile``: the bare
loop's step, eager and ``torch.compile``'d, timed interleaved on one batch, to say where compiling
wins on this machine.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from gcnn.validation import check_choice

from .timing import interleaved_timings, time_calls

__all__ = ["rotmnist_networks", "bare_loop_epochs", "compile_speedup", "measure_preset",
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


def _trainer_epoch(trainer: Any, epoch: int) -> float:
    """Seconds of one epoch of the trainer's loop as :meth:`Trainer.train_to_the_end` runs it: the epoch
    (training, and the evaluation where the cadence asks), then the checkpoint and the metrics file."""
    from repro.train.run_folder import save_checkpoint
    start = time.perf_counter()
    trainer.history.append(trainer.run_epoch(epoch))
    save_checkpoint(trainer.run_dir, trainer.checkpoint(epoch))
    trainer.write_metrics()
    return time.perf_counter() - start


def measure_preset(name: str, overrides: Sequence[str], work_dir: Path, *, rounds: int = 3,
                   with_compile: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One network: after a warm-up epoch of each, ``rounds`` rounds of one bare-loop epoch then one
    trainer epoch that does not evaluate (interleaved, so drift of the machine hits both alike); then one
    BN re-estimation and one test pass of the trainer. ``epoch_s`` = the trainer's median epoch +
    test pass / ``eval_every`` + re-estimation / ``epochs`` (the preset re-estimates before its last
    evaluation only); ``ratio`` = ``epoch_s`` / the bare loop's median epoch."""
    import models
    from repro.train import compose_config, load_config
    from repro.train import distributed
    from repro.train.config import build_option
    from repro.train.trainer import Trainer, setup

    config = load_config(compose_config([*overrides, "logger=none"]))
    ctx = distributed.setup(config.device)
    trainer = Trainer(config, work_dir / name, ctx)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    trainer.state = setup(config, ctx)
    (train_x, train_y), n_classes = trainer.state.train, trainer.state.data.num_classes

    def build() -> torch.nn.Module:
        torch.manual_seed(config.seed)
        m = config.model
        return models.build_model(m.name, config.group.name, n_classes, in_channels=train_x.shape[1],
                                  width=m.width, **dict(m.overrides))

    model = build()
    optimizer = build_option("optim", config.optim, params=model.parameters())
    augment = build_option("augment", config.augment)
    epochs = [e for e in range(1, config.epochs) if not trainer.evaluates(e)][: 1 + rounds]
    bare, timed = [], []
    for i, epoch in enumerate(epochs):  # the first of each is the warm-up
        bare += bare_loop_epochs(model, train_x, train_y, config.batch_size, optimizer, augment, 1, seed=epoch)
        timed.append(_trainer_epoch(trainer, epoch))
    bare, timed = bare[1:], timed[1:]
    recal_s = time_calls(trainer.recalibrate_batchnorm, 1, "cpu") if config.bn_recalibration else 0.0
    eval_s = time_calls(lambda: trainer.evaluate(*trainer.state.test), 1, "cpu")
    train_s, bare_s = statistics.median(timed), statistics.median(bare)
    epoch_s = train_s + eval_s / config.eval_every + recal_s / config.epochs
    log(f"  {name}: bare loop epochs {', '.join(f'{s:.1f}' for s in bare)} s; trainer epochs "
        f"{', '.join(f'{s:.1f}' for s in timed)} s; test pass {eval_s:.1f} s every {config.eval_every}, "
        f"BN re-estimation {recal_s:.1f} s")
    batch = train_x[: config.batch_size], train_y[: config.batch_size]
    compiled = compile_speedup(build, *batch) if with_compile else dict.fromkeys(COMPILE_KEYS)
    row = {"network": name, "overrides": list(overrides), "model": config.model.name, "group": config.group.name,
           "epochs": config.epochs, "eval_every": config.eval_every, "batch_size": config.batch_size,
           "eval_batch_size": config.eval_batch_size, "n_train": len(train_y), "n_test": len(trainer.state.test[1]),
           "bare_epoch_s": bare_s, "bare_samples_s": bare, "train_s": train_s, "trainer_samples_s": timed,
           "eval_s": eval_s, "recal_s": recal_s, "epoch_s": epoch_s, "ratio": epoch_s / bare_s, **compiled,
           "projected_run_s": config.epochs * epoch_s}
    log(f"  {name}: ratio {row['ratio']:.3f}x, projected run {row['projected_run_s'] / 3600:.2f} h"
        + (f", compiled step {compiled['compiled_speedup']:.2f}x eager (compile {compiled['compile_s']:.0f} s)"
           if with_compile else ""))
    return row


EPOCH_RATIO_LIMIT = 1.10   # the trainer's epoch (at the preset's cadence) over the bare loop's
EPOCH_NOTE = ("Synthetic MNIST-rot-format data, {n_train:,} train and {n_test:,} test images (MNIST-rot: 12,000 / "
              "50,000; timings do not depend on pixel values). Bare-loop and trainer epochs alternate in "
              "one process after a warm-up epoch of each; a trainer epoch is its loop's body (the epoch, the "
              "checkpoint, the metrics file; no logger). Trainer at cadence = its median epoch + the test "
              "pass / eval_every + the BN re-estimation / epochs. Bare loop: shuffle, augment, forward, loss, "
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
    header = ["network", "overrides", "epochs", "eval every", "bare epoch s", "trainer epoch s", "test pass s",
              "BN re-estimation s", "trainer at cadence s", "ratio", "compiled step vs eager", "compile s",
              "projected run h"]
    body = [[r["network"], " ".join(r["overrides"][:2]), r["epochs"], r["eval_every"],
             f"{r['bare_epoch_s']:.2f}", f"{r['train_s']:.2f}", f"{r['eval_s']:.2f}", f"{r['recal_s']:.2f}",
             f"{r['epoch_s']:.2f}",
             f"{r['ratio']:.3f}x", "-" if r["compiled_speedup"] is None else f"{r['compiled_speedup']:.2f}x",
             "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}", f"{r['projected_run_s'] / 3600:.2f}"]
            for r in rows]
    return ("## Epoch time\n\nPer network at the batch of its preset. `ratio` = trainer at cadence / bare epoch. "
            "`compiled step vs eager` > 1 means torch.compile (inductor) trains faster on this CPU. "
            "Projected run = the preset's epochs x the trainer's epoch at cadence.\n\n" + markdown_table(header, body))
