"""The training loop shared by every model: :func:`setup` builds all run state as one
:class:`RunState`, :meth:`Trainer.fit` is the loop (one :func:`repro.train.step.train_step` per
batch); rank 0 writes the run folder (:mod:`repro.train.run_folder`) and holds its lock. Early
stops (Ctrl-C, SIGTERM, divergence, a full disk) are the exceptions of :mod:`repro.train.stops`."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import models
from repro.device import describe_machine, forward_in_layout, resolve_flag, resolve_speed_flags
from repro.io import write_json, write_text

from . import distributed
from .config import ConfigError, TrainConfig, build_option, load_config, recorded_config
from .distributed import DistContext
from .identity import identity_hash
from .measure import equivariance_group, measure_equivariance, robustness_errors
from .reproducible import determinism, epoch_batches, global_batches, seed_everything, stream_seed
from .run_folder import (CONFIG, DIVERGED, FINISHED, METRICS, RESULT, RunFileWarning, check_same_identity,
                         load_checkpoint, load_result, record_diverged, run_lock, save_checkpoint)
from .step import TrainStep, build_train_step, prepare_model, train_step
from .stops import NO_SPACE, Diverged, DiskFull, Interrupted, RunLocked, StopSignal, stop_on_signals

__all__ = ["run", "setup", "RunState", "Trainer"]

# checkpoint key -> the RunState attribute whose state_dict it holds
STATEFUL = {"model": "module", "optimizer": "step.optimizer", "scheduler": "step.scheduler", "scaler": "step.scaler"}
# Training steps between checks that the loss is finite: one host sync per this many steps (and one
# per epoch) instead of one per step, which would stall a GPU's queue; a diverged run wastes at most these.
DIVERGENCE_CHECK_STEPS = 25


def run(cfg: Any, run_dir: str | os.PathLike, *, multirun: bool = False) -> dict[str, Any]:
    """Train one model as configured (a composed config, a plain dict or a :class:`TrainConfig`)
    and return ``result.json``. Rerunning in the same ``run_dir`` resumes; a finished run is not
    redone. ``multirun``: part of a sweep (wandb group ``sweep_name``). Every torchrun process calls it."""
    config = load_config(cfg)
    ctx = distributed.setup(config.device)
    try:
        with determinism(config.deterministic):
            return Trainer(config, Path(run_dir), ctx, multirun=multirun).fit()
    finally:
        ctx.teardown()


# ---------------------------------------------------------------- run state
@dataclass
class RunState:
    """Everything a run trains with, built once by :func:`setup`."""

    data: Any                    # the repro.data bundle (name, num_classes, zca_shrinkage, ...)
    train: tuple[torch.Tensor, torch.Tensor]          # images, labels on the device
    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    augment: Callable[..., torch.Tensor]
    module: nn.Module            # the model itself: checkpoints, BN recalibration, measurements
    eval_model: nn.Module        # compiled (or not) wrapper used for evaluation
    step: TrainStep              # the training wrapper (DDP and/or compiled), optimiser, schedule, grad scaler
    compiled: bool               # torch.compile with static shapes: full training batches, padded eval batches
    steps_per_epoch: int
    params: int
    macs: int


def setup(config: TrainConfig, ctx: DistContext) -> RunState:
    """Build the run's data (on the device), model, optimiser, schedule and grad scaler."""
    from repro.data import build_data
    data, device = build_data(config.data), ctx.device
    train = data.train_x.to(device), data.train_y.to(device)
    test = data.test_x.to(device), data.test_y.to(device)
    val = (data.val_x.to(device), data.val_y.to(device)) if data.val_x is not None and len(data.val_x) else None
    amp_dtype = config.amp_dtype if resolve_flag(config.amp, device, "amp") else None
    compiled, channels_last = resolve_speed_flags(config.compile, config.channels_last, device)

    module = models.build_model(config.model.name, config.group.name, data.num_classes, in_channels=data.in_channels,
                                width=config.model.width, **dict(config.model.overrides)).to(device)
    params, macs = models.count_parameters(module), models.count_macs(module, tuple(train[0].shape[1:]))
    # compiled: static shapes, one graph per shape family (see Trainer.evaluate)
    module, train_model, eval_model = prepare_model(module, device, channels_last=channels_last, compiled=compiled,
                                                    distributed=ctx.distributed)
    steps = len(epoch_batches(config.seed, 1, len(train[0]), config.batch_size, config.steps_per_epoch,
                              world_size=ctx.world_size, drop_last=compiled))
    if steps == 0:
        raise ConfigError(f"batch_size={config.batch_size} leaves no training batch for "
                          f"{len(train[0])} images on {ctx.world_size} process(es)")
    step = build_train_step(config, module, train_model, device, steps_per_epoch=steps, amp_dtype=amp_dtype,
                            channels_last=channels_last)
    return RunState(data, train, test, val, build_option("augment", config.augment), module, eval_model, step,
                    compiled, steps, params, macs)


# ---------------------------------------------------------------- the loop
class Trainer:
    """One run: :meth:`fit` trains (or resumes) to ``epochs`` and writes the record."""

    def __init__(self, config: TrainConfig, run_dir: Path, ctx: DistContext, *, multirun: bool = False) -> None:
        self.config, self.run_dir, self.ctx, self.multirun = config, Path(run_dir), ctx, multirun
        self.device = ctx.device
        self.config_dict = recorded_config(config)  # what result.json and checkpoints record
        self.progress = ctx.is_main and (sys.stderr.isatty() if config.progress == "auto" else bool(config.progress))
        self.history: list[dict[str, Any]] = []
        self.start_time = time.time()  # minus the wall time of earlier sessions once restored
        self.state: RunState | None = None
        self.epoch = 1  # the epoch in progress (named when a run is interrupted)

    def fit(self) -> dict[str, Any]:
        """Train (or resume) to ``epochs``, then write and return ``result.json``. While it trains, the
        run folder is locked (:func:`run_lock`). Raises :class:`Interrupted` on Ctrl-C or SIGTERM,
        :class:`Diverged` at the first non-finite training loss, :class:`DiskFull` when a run file cannot
        be written for lack of space; each leaves the last finished epoch's checkpoint intact."""
        with self.lock():
            try:
                with stop_on_signals():
                    return self.train_to_the_end()
            except (KeyboardInterrupt, StopSignal) as stop:
                raise Interrupted(self.epoch, getattr(stop, "signum", signal.SIGINT)) from None
            except OSError as error:
                if error.errno not in NO_SPACE:
                    raise
                raise DiskFull(f"no space left writing {error.filename} ({error.strerror}); the run folder's "
                               "earlier files are intact: free space (or quota) and rerun the same command to "
                               "resume") from None

    @contextlib.contextmanager
    def lock(self) -> Any:
        """Rank 0 holds the run folder's lock (:func:`run_lock`); every rank raises if it cannot."""
        with contextlib.ExitStack() as stack:
            refused = None
            if self.ctx.is_main:
                try:
                    stack.enter_context(run_lock(self.run_dir))
                except RunLocked as error:
                    refused = error
            if self.ctx.distributed and self.ctx.all_reduce_sum(torch.tensor(
                    [float(refused is not None)], device=self.device)).item() and refused is None:
                refused = RunLocked(f"run folder {str(self.run_dir)!r} is in use (rank 0 found it locked)")
            if refused is not None:
                raise refused
            yield

    def train_to_the_end(self) -> dict[str, Any]:
        record = self.read_record()
        if record is not None and record["status"] == FINISHED:
            check_same_identity(self.run_dir, record["config"], self.config_dict)
            self.say(f"already finished: {self.run_dir} (final test error {record['final_test_error']:.2f}%)")
            return record
        if record is not None and record["status"] == DIVERGED:
            self.refuse_a_diverged_run(record)
        checkpoint = load_checkpoint(self.run_dir)
        if checkpoint is not None:  # refuse a different experiment before any work
            check_same_identity(self.run_dir, checkpoint["config"], self.config_dict)
            self.epoch = int(checkpoint["epoch"]) + 1
        seed_everything(self.config.seed)
        self.state = setup(self.config, self.ctx)
        self.config_dict = recorded_config(self.config)  # data.content of files a download just brought
        done = self.restore(checkpoint) if checkpoint is not None else 0
        if self.ctx.is_main:
            write_json(self.run_dir / CONFIG, self.config_dict)
        self.announce(done)
        logger = self.make_logger()
        try:
            for epoch in range(done + 1, self.config.epochs + 1):
                self.epoch = epoch
                self.history.append(self.run_epoch(epoch))
                if self.ctx.is_main:
                    save_checkpoint(self.run_dir, self.checkpoint(epoch))
                    self.write_metrics()
                    logger.log_epoch(self.history)
                self.say(self.summary_line(self.history[-1]))
            result = self.result()
            if self.ctx.is_main:
                write_json(self.run_dir / RESULT, result)
                logger.finish(result)
            self.ctx.barrier()
        finally:
            logger.close()
        self.say(f"finished: final test error {result['final_test_error']:.2f}% "
                 f"(best {result['best_test_error']:.2f}% at epoch {result['best_epoch']}), "
                 f"equivariance error {result['equivariance_error']:.2e} ({result['equivariance_group']})"
                 f" -> {self.run_dir / RESULT}")
        return result

    def read_record(self) -> dict[str, Any] | None:
        """The folder's ``result.json`` (:func:`load_result`, any status), or None; a corrupt one is one
        warning line and None, so the run resumes from its last checkpoint and redoes the final evaluation."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RunFileWarning)
            record = load_result(self.run_dir)
        for warning in (w.message for w in caught if isinstance(w.message, RunFileWarning)):
            print(f"warning: {warning}; redoing the final evaluation from the last checkpoint", file=sys.stderr,
                  flush=True)
        return record

    def refuse_a_diverged_run(self, record: dict[str, Any]) -> None:
        """A run folder that recorded a divergence (``record``) is not retrained: the same command would
        diverge again."""
        check_same_identity(self.run_dir, record.get("config", {}), self.config_dict)
        raise Diverged(f"{record.get('reason', 'diverged')}; not retrained: change optim.lr or grad_clip (a new run "
                       f"folder), or delete {self.run_dir} to try again")

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` ends with an evaluation: every ``eval_every`` epochs and the last."""
        return epoch % self.config.eval_every == 0 or epoch == self.config.epochs

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch, then evaluate if :meth:`evaluates`: one row of ``metrics.jsonl`` (without
        the test and val keys on an epoch that is not evaluated)."""
        start = time.time()
        lr = self.state.step.optimizer.param_groups[0]["lr"]
        train = self.train_epoch(epoch)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train["loss"], "train_error": train["error"]}
        if self.evaluates(epoch):
            if self.config.bn_recalibration and (epoch == self.config.epochs or self.state.val is not None):
                self.recalibrate_batchnorm()  # only where it changes a reported or selecting number
            row["test_loss"], row["test_error"] = self.evaluate(*self.state.test)
            if self.state.val is not None:
                row["val_loss"], row["val_error"] = self.evaluate(*self.state.val)
        row.update(lr=lr, epoch_time_s=time.time() - start,
                   images_per_s=train["images"] / max(train["seconds"], 1e-9))
        return row

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of optimiser steps in the seeded order; returns loss/error/images/seconds."""
        cfg, ctx, state = self.config, self.ctx, self.state
        seed_everything(stream_seed(cfg.seed, epoch, 0, ctx.rank))  # dropout etc.
        augment_gen = torch.Generator(device=self.device).manual_seed(stream_seed(cfg.seed, epoch, 2))
        batches = epoch_batches(cfg.seed, epoch, len(state.train[0]), cfg.batch_size, cfg.steps_per_epoch,
                                world_size=ctx.world_size, drop_last=state.compiled)
        state.step.model.train()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, errors
        losses = torch.zeros(len(batches), dtype=torch.float32, device=self.device)  # per step, for the check
        count, start = 0, time.time()
        for i, index in enumerate(tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr,
                                       unit="batch", disable=not self.progress)):
            index = index.to(self.device)
            x = state.augment(state.train[0][index], augment_gen)  # the global batch, same on every rank
            x, y = ctx.rank_slice(x), ctx.rank_slice(state.train[1][index])
            # ws / n: the GLOBAL batch mean once DDP averages
            loss_sum, logits = train_step(state.step, x, y, ctx.world_size / index.numel())
            losses[i] = loss_sum
            totals += torch.stack([loss_sum.double(), (logits.argmax(1) != y).sum().double()])
            count += y.shape[0]
            if (i + 1) % DIVERGENCE_CHECK_STEPS == 0:
                self.check_finite(losses, i + 1, epoch)
        self.check_finite(losses, len(batches), epoch)
        loss_total, wrong_total, count = self.reduce_totals(totals, count)  # one sync per epoch
        return {"loss": loss_total / count, "error": 100.0 * wrong_total / count, "images": count,
                "seconds": time.time() - start}

    def check_finite(self, losses: torch.Tensor, done: int, epoch: int) -> None:
        """Stop with :class:`Diverged` (recorded in ``result.json``) at the first non-finite loss of
        ``losses[:done]`` (this epoch's steps so far, on any rank). The unscaled float32 loss is checked: a float16
        step that the GradScaler skips for inf gradients while the loss is finite does not count."""
        bad = self.ctx.all_reduce_sum((~torch.isfinite(losses[:done])).float())
        if not bad.any():  # the host sync
            return
        step = int(bad.nonzero()[0, 0])
        loss = float(losses[step])
        loss = loss if not math.isfinite(loss) else "non-finite on another rank"
        reason = f"diverged at epoch {epoch}, step {step + 1} of {len(losses)}: training loss {loss}"
        if self.ctx.is_main:
            record_diverged(self.run_dir, {
                "epoch": epoch, "step": step + 1, "global_step": (epoch - 1) * self.state.steps_per_epoch + step + 1,
                "loss": str(loss), "reason": reason, **self.run_fields()})
        raise Diverged(f"{reason}; lower optim.lr or set grad_clip (e.g. grad_clip=1.0) in a new run; "
                       f"recorded in {self.run_dir / RESULT}")

    @torch.no_grad()
    def evaluate(self, x_all: torch.Tensor, y_all: torch.Tensor,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
        """Mean loss and error (%) over ``x_all`` (each batch passed through ``transform``), sharded
        over the ranks and summed. Compiled models see one batch shape: the last batch is padded
        and the padding's logits dropped."""
        self.state.eval_model.eval()
        size = self.config.eval_batch_size
        shard = self.ctx.rank_slice(torch.arange(len(x_all), device=self.device))
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, errors
        for index in shard.split(size):
            x = x_all[index] if transform is None else transform(x_all[index])
            n = x.shape[0]
            if self.state.compiled and n < size:
                x = torch.cat([x, x.new_zeros(size - n, *x.shape[1:])])
            logits = self.forward(self.state.eval_model, x)[:n]
            y = y_all[index]
            totals += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                                   (logits.argmax(1) != y).sum().double()])
        loss_total, wrong_total, count = self.reduce_totals(totals, len(shard))
        return loss_total / count, 100.0 * wrong_total / count

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Set every BN's running mean/var to the average over the (un-augmented) training set in
        global batches of ``eval_batch_size``, dropout off. The cumulative average uses momentum
        ``1 / k`` at batch ``k``: a host number, so no device sync per layer and batch."""
        norms = [m for m in self.state.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        self.state.module.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.train()
        order = torch.arange(len(self.state.train[0]), device=self.device)
        for k, index in enumerate(global_batches(order, self.config.eval_batch_size, self.ctx.world_size), 1):
            for m in norms:
                m.momentum = 1.0 / k
            self.forward(self.state.module, self.state.train[0][self.ctx.rank_slice(index)])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.state.module.eval()

    # ---------------------------------------------------------------- helpers
    def say(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.ctx.is_main:
            print(message, flush=True)

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` in the run's precision and memory layout."""
        return forward_in_layout(model, x, self.state.step.amp_dtype, self.state.step.channels_last)

    def reduce_totals(self, totals: torch.Tensor, count: int) -> list[float]:
        """``[loss sum, errors, images]`` summed over the ranks: the host's image count joins the
        device sums only here, once per pass."""
        return self.ctx.all_reduce_sum(torch.cat([totals, totals.new_tensor([float(count)])])).tolist()

    def announce(self, done: int) -> None:
        state = self.state
        self.say(f"run {self.run_dir}: {self.config.model.name}/{self.config.group.name} on "
                 f"{state.data.name} ({len(state.train[0])} train, {len(state.test[0])} test), "
                 f"{state.params:,} params, {state.steps_per_epoch} steps/epoch, device {self.device} "
                 f"x{self.ctx.world_size}" + (f", resuming after epoch {done}" if done else ""))

    def summary_line(self, row: dict[str, Any]) -> str:
        val = f"  val err {row['val_error']:.2f}%" if "val_error" in row else ""
        test = f"  test loss {row['test_loss']:.4f} err {row['test_error']:.2f}%" if "test_error" in row else ""
        return (f"epoch {row['epoch']}/{self.config.epochs}  train loss {row['train_loss']:.4f} "
                f"err {row['train_error']:.2f}%{test}{val}  lr {row['lr']:.1e}  {row['epoch_time_s']:.1f}s  "
                f"{row['images_per_s']:.0f} img/s")

    # ---------------------------------------------------------------- the record
    def checkpoint(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, **{key: self.stateful(name).state_dict() for key, name in STATEFUL.items()},
                "history": self.history, "config": self.config_dict,
                "wall_time_s": time.time() - self.start_time}

    def stateful(self, name: str) -> Any:
        """The run-state object at the dotted attribute ``name`` of :data:`STATEFUL`."""
        obj = self.state
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def restore(self, checkpoint: dict[str, Any]) -> int:
        """Load a checkpoint into the run state; return the number of finished epochs."""
        for key, name in STATEFUL.items():
            self.stateful(name).load_state_dict(checkpoint[key])
        self.history = list(checkpoint["history"])
        self.start_time -= float(checkpoint["wall_time_s"])
        if self.ctx.is_main:  # drop lines of an epoch that was killed after the checkpoint
            self.write_metrics()
        return int(checkpoint["epoch"])

    def write_metrics(self) -> None:
        write_text(self.run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in self.history))

    def make_logger(self) -> Any:
        from .loggers import Logger
        if not self.ctx.is_main:
            return Logger()
        c = self.config
        tags = [c.group.name, c.model.name, c.augment["name"], c.data.name]
        return build_option("logger", c.logger, run_dir=self.run_dir, config=self.config_dict,
                            run_name="-".join(tags) + f"-seed{c.seed}",
                            default_group=c.sweep_name if self.multirun else None, default_tags=tags)

    def run_fields(self) -> dict[str, Any]:
        """The keys of every ``result.json``, finished or diverged: :data:`~.run_folder.RESULT_COMMON_KEYS`
        (what the run is, its identity and config, its wall time so far)."""
        c = self.config
        return {"model": c.model.name, "group": c.group.name, "augment": c.augment["name"], "data": c.data.name,
                "train_size": c.data.train_size, "seed": c.seed, "epochs": c.epochs,
                "identity": identity_hash(self.config_dict), "config": self.config_dict,
                "wall_time_s": time.time() - self.start_time}

    def result(self) -> dict[str, Any]:
        """The finished run's ``result.json``: :meth:`run_fields` and what it measured."""
        c, state, last = self.config, self.state, self.history[-1]
        evaluated = [row for row in self.history if "test_error" in row]  # the last epoch always is
        best = min(evaluated, key=lambda row: (row["test_error"], row["epoch"]))
        measured = equivariance_group(c.group.name)
        images = state.test[0][: c.equivariance_images]
        main = self.ctx.is_main
        error = measure_equivariance(state.module, images, measured, c.eval_batch_size) if main else math.nan
        result = {
            "status": FINISHED, **self.run_fields(), "n_train": int(state.train[0].shape[0]),
            "steps": c.epochs * state.steps_per_epoch,
            "final_test_error": last["test_error"], "final_test_loss": last["test_loss"],
            "best_test_error": best["test_error"], "best_epoch": best["epoch"],
            "final_train_loss": last["train_loss"], "final_train_error": last["train_error"],
            "params": state.params, "macs": state.macs, "equivariance_error": error,
            "zca_shrinkage": state.data.zca_shrinkage,
            "equivariance_group": measured, "equivariance_images": int(images.shape[0]),
            **describe_machine(self.device, self.ctx.world_size),
        }  # written with sorted keys (write_json)
        if c.robustness:
            result["robustness"] = robustness_errors(lambda t: self.evaluate(*state.test, transform=t)[1],
                                                     rotations=c.data.name == "digits_rot")
        if "val_error" in last:
            best_val = min((row for row in evaluated if "val_error" in row), key=lambda row: (row["val_error"],
                                                                                            row["epoch"]))
            result.update(final_val_error=last["val_error"], best_val_error=best_val["val_error"],
                          best_val_epoch=best_val["epoch"], test_error_at_best_val=best_val["test_error"])
        return result
