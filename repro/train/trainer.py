"""The training loop shared by every model: :func:`setup` builds all run state as one
:class:`RunState`, :meth:`Trainer.fit` is the loop; rank 0 writes the run folder
(:mod:`repro.train.run_folder`)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import models
from repro.device import describe_machine, forward_in_layout, resolve_flag, resolve_speed_flags, to_channels_last
from repro.io import write_json, write_text

from . import distributed
from .config import ConfigError, TrainConfig, build_option, load_config, recorded_config
from .distributed import DistContext
from .identity import identity_hash
from .measure import equivariance_group, measure_equivariance, robustness_errors
from .optim import build_optimizer, build_scheduler
from .reproducible import determinism, epoch_batches, global_batches, seed_everything, stream_seed
from .run_folder import CONFIG, METRICS, RESULT, check_same_identity, load_checkpoint, read_result, save_checkpoint

__all__ = ["run", "setup", "RunState", "Trainer"]

# checkpoint key -> the RunState attribute whose state_dict it holds
STATEFUL = {"model": "module", "optimizer": "optimizer", "scheduler": "scheduler", "scaler": "scaler"}


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
    train_model: nn.Module       # DDP and/or compiled wrapper used for training steps
    eval_model: nn.Module        # compiled (or not) wrapper used for evaluation
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: str | None        # autocast dtype, None without amp
    channels_last: bool
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
    if channels_last:
        to_channels_last(module)
    train_model = eval_model = module
    if ctx.distributed:  # batch norm over the global batch, gradients averaged by DDP
        module = eval_model = distributed.convert_sync_batchnorm(module, device)
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if compiled:  # static shapes: one graph per shape family (see Trainer.evaluate)
        train_model, eval_model = torch.compile(train_model, dynamic=False), torch.compile(module, dynamic=False)

    steps = len(epoch_batches(config.seed, 1, len(train[0]), config.batch_size, config.steps_per_epoch,
                              world_size=ctx.world_size, drop_last=compiled))
    if steps == 0:
        raise ConfigError(f"batch_size={config.batch_size} leaves no training batch for "
                          f"{len(train[0])} images on {ctx.world_size} process(es)")
    optimizer = build_optimizer(module.parameters(), config.optim)
    scheduler = build_scheduler(optimizer, config.schedule, steps, config.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == "float16" and device.type == "cuda")
    return RunState(data, train, test, val, build_option("augment", config.augment), module, train_model, eval_model,
                    optimizer, scheduler, scaler, amp_dtype, channels_last, compiled, steps, params, macs)


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

    def fit(self) -> dict[str, Any]:
        """Train (or resume) to ``epochs``, then write and return ``result.json``."""
        finished = read_result(self.run_dir)
        if finished is not None:
            check_same_identity(self.run_dir, finished.get("config", {}), self.config_dict)
            self.say(f"already finished: {self.run_dir} (final test error {finished['final_test_error']:.2f}%)")
            return finished
        checkpoint = load_checkpoint(self.run_dir)
        if checkpoint is not None:  # refuse a different experiment before any work
            check_same_identity(self.run_dir, checkpoint["config"], self.config_dict)
        seed_everything(self.config.seed)
        self.state = setup(self.config, self.ctx)
        done = self.restore(checkpoint) if checkpoint is not None else 0
        if self.ctx.is_main:
            write_json(self.run_dir / CONFIG, self.config_dict)
        self.announce(done)
        logger = self.make_logger()
        try:
            for epoch in range(done + 1, self.config.epochs + 1):
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

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch, then evaluate: one row of ``metrics.jsonl``."""
        start = time.time()
        lr = self.state.optimizer.param_groups[0]["lr"]
        train = self.train_epoch(epoch)
        if self.config.bn_recalibration and (epoch == self.config.epochs or self.state.val is not None):
            self.recalibrate_batchnorm()  # only where it changes a reported or selecting number
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train["loss"], "train_error": train["error"]}
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
        state.train_model.train()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, errors
        count, start = 0, time.time()
        for index in tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr, unit="batch",
                          disable=not self.progress):
            index = index.to(self.device)
            x = state.augment(state.train[0][index], augment_gen)  # the global batch, same on every rank
            x, y = ctx.rank_slice(x), ctx.rank_slice(state.train[1][index])
            logits = self.forward(state.train_model, x)
            loss_sum = F.cross_entropy(logits.float(), y, reduction="sum", label_smoothing=cfg.label_smoothing)
            loss = loss_sum * (ctx.world_size / index.numel())  # the GLOBAL batch mean once DDP averages
            state.optimizer.zero_grad(set_to_none=True)
            state.scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                state.scaler.unscale_(state.optimizer)
                nn.utils.clip_grad_norm_(state.module.parameters(), cfg.grad_clip)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.scheduler.step()
            totals += torch.stack([loss_sum.detach().double(), (logits.detach().argmax(1) != y).sum().double()])
            count += y.shape[0]
        loss_total, wrong_total, count = self.reduce_totals(totals, count)  # one sync per epoch
        return {"loss": loss_total / count, "error": 100.0 * wrong_total / count, "images": count,
                "seconds": time.time() - start}

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
        return forward_in_layout(model, x, self.state.amp_dtype, self.state.channels_last)

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
        return (f"epoch {row['epoch']}/{self.config.epochs}  train loss {row['train_loss']:.4f} "
                f"err {row['train_error']:.2f}%  test loss {row['test_loss']:.4f} "
                f"err {row['test_error']:.2f}%{val}  lr {row['lr']:.1e}  {row['epoch_time_s']:.1f}s  "
                f"{row['images_per_s']:.0f} img/s")

    # ---------------------------------------------------------------- the record
    def checkpoint(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, **{key: getattr(self.state, name).state_dict() for key, name in STATEFUL.items()},
                "history": self.history, "config": self.config_dict,
                "wall_time_s": time.time() - self.start_time}

    def restore(self, checkpoint: dict[str, Any]) -> int:
        """Load a checkpoint into the run state; return the number of finished epochs."""
        for key, name in STATEFUL.items():
            getattr(self.state, name).load_state_dict(checkpoint[key])
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

    def result(self) -> dict[str, Any]:
        c, state, last = self.config, self.state, self.history[-1]
        best = min(self.history, key=lambda row: (row["test_error"], row["epoch"]))
        measured = equivariance_group(c.group.name)
        images = state.test[0][: c.equivariance_images]
        main = self.ctx.is_main
        error = measure_equivariance(state.module, images, measured, c.eval_batch_size) if main else math.nan
        result = {
            "status": "finished", "model": c.model.name, "group": c.group.name, "augment": c.augment["name"],
            "data": c.data.name, "train_size": c.data.train_size, "n_train": int(state.train[0].shape[0]),
            "seed": c.seed, "epochs": c.epochs, "steps": c.epochs * state.steps_per_epoch,
            "final_test_error": last["test_error"], "final_test_loss": last["test_loss"],
            "best_test_error": best["test_error"], "best_epoch": best["epoch"],
            "final_train_loss": last["train_loss"], "final_train_error": last["train_error"],
            "params": state.params, "macs": state.macs, "equivariance_error": error,
            "zca_shrinkage": state.data.zca_shrinkage,
            "equivariance_group": measured, "equivariance_images": int(images.shape[0]),
            "identity": identity_hash(self.config_dict), "config": self.config_dict,
            **describe_machine(self.device, self.ctx.world_size),
            "wall_time_s": time.time() - self.start_time,
        }
        if c.robustness:
            result["robustness"] = robustness_errors(lambda t: self.evaluate(*state.test, transform=t)[1],
                                                     rotations=c.data.name == "digits_rot")
        if "val_error" in last:
            best_val = min(self.history, key=lambda row: (row["val_error"], row["epoch"]))
            result.update(final_val_error=last["val_error"], best_val_error=best_val["val_error"],
                          best_val_epoch=best_val["epoch"], test_error_at_best_val=best_val["test_error"])
        return result
