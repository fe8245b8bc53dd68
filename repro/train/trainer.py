"""The training loop shared by every model: data kept on the device and batched by
indexing, per-epoch metrics, checkpoint/resume, DDP, and the final ``result.json``.

Run directory (see :func:`run`): ``metrics.jsonl`` (one line per finished epoch),
``checkpoint.pt`` (after every epoch), ``result.json`` (at the end); all written
atomically, by rank 0 only.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import models
from repro.io import write_json, write_text

from . import distributed
from .checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from .config import ConfigError, TrainConfig, load_config, to_dict
from .distributed import DistContext
from .environment import environment
from .equivariance import equivariance_group, measure_equivariance
from .loggers import Logger, build_logger
from .optim import build_optimizer, build_scheduler

__all__ = ["run", "Trainer", "default_run_dir", "stream_seed", "global_batches", "read_result",
           "RESUME_IGNORED_KEYS"]

METRICS = "metrics.jsonl"
RESULT = "result.json"
# Config keys that may change between a run and its resumption (they do not change the numbers).
RESUME_IGNORED_KEYS = ("logger", "progress", "sweep_name", "equivariance_images")


def run(cfg: Any, run_dir: str | os.PathLike | None = None, *, multirun: bool = False) -> dict[str, Any]:
    """Train one model as configured and return the contents of ``result.json``.

    ``cfg``: a Hydra/OmegaConf config, a plain dict (see :mod:`repro.train.config`;
    missing keys take their defaults) or a :class:`TrainConfig`. ``run_dir``:
    where the run lives (default :func:`default_run_dir`); rerunning with the same
    directory resumes from ``checkpoint.pt`` and a finished run is not redone.
    ``multirun``: part of a sweep (the wandb group becomes ``sweep_name``).
    Under ``torchrun`` every process calls this; rank 0 writes the files.
    """
    config = load_config(cfg)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    ctx = distributed.setup(config.device)
    flags = _determinism_flags()
    try:
        return Trainer(config, run_dir, ctx, multirun=multirun).fit()
    finally:
        _restore_determinism_flags(flags)
        distributed.teardown(ctx)


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<data>/<model>-<group>-<augment>/n<train_size|full>-seed<seed>``."""
    size = config.data.get("train_size")
    return (Path("runs") / str(config.data.get("name", "data"))
            / f"{config.model.name}-{config.group.name}-{config.augment.name}"
            / f"n{size if size is not None else 'full'}-seed{config.seed}")


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``result.json`` of a finished run, or None."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("status") == "finished" else None


def stream_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """An independent 63-bit seed for (run seed, epoch, stream, rank)."""
    state = np.random.SeedSequence([seed, epoch, stream, rank]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def global_batches(order: torch.Tensor, batch_size: int, world_size: int = 1) -> list[torch.Tensor]:
    """Split an index order into global batches; a last partial batch is kept when
    every rank gets at least one image of it."""
    batches = list(order.split(batch_size))
    if batches and batches[-1].numel() < world_size:
        batches.pop()
    return batches


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_IGNORED_KEYS}


def _check_same_config(run_dir: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    saved, current = _comparable(saved), _comparable(current)
    if saved != current:
        key = next(k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k))
        raise ConfigError(
            f"run directory {str(run_dir)!r} holds a run with a different config "
            f"({key}: {saved.get(key)!r} there, {current.get(key)!r} now); use another run "
            f"directory or delete that one")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _configure_determinism(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def _determinism_flags() -> tuple[bool, bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def _restore_determinism_flags(flags: tuple[bool, bool, bool, bool]) -> None:
    """Leave the process as it was (a run inside a test session or a notebook)."""
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]


def _flag(value: Any, device: torch.device) -> bool:
    """``auto`` -> on for CUDA; otherwise the bool itself."""
    return device.type == "cuda" if value == "auto" else bool(value)


class Trainer:
    """One run: build everything from a :class:`TrainConfig`, then :meth:`fit`."""

    def __init__(self, config: TrainConfig, run_dir: Path, ctx: DistContext, *,
                 multirun: bool = False) -> None:
        self.config = config
        self.config_dict = to_dict(config)
        self.run_dir = Path(run_dir)
        self.ctx = ctx
        self.device = ctx.device
        self.multirun = multirun
        self.amp = _flag(config.amp, self.device)
        self.amp_dtype = getattr(torch, config.amp_dtype)
        self.channels_last = _flag(config.channels_last, self.device)
        self.progress = sys.stderr.isatty() if config.progress == "auto" else bool(config.progress)

    # ------------------------------------------------------------------ helpers
    def say(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.ctx.is_main:
            print(message, flush=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ------------------------------------------------------------------ setup
    def load_data(self) -> None:
        from repro.data import build_augment, build_data

        bundle = build_data(self.config.data)
        self.data = bundle
        self.train_x, self.train_y = bundle.train_x.to(self.device), bundle.train_y.to(self.device)
        self.test_x, self.test_y = bundle.test_x.to(self.device), bundle.test_y.to(self.device)
        self.val = None
        if getattr(bundle, "val_x", None) is not None and len(bundle.val_x) > 0:
            self.val = (bundle.val_x.to(self.device), bundle.val_y.to(self.device))
        self.augment = build_augment(self.config.augment.name, pad=self.config.augment.pad)

    def build_model(self) -> None:
        cfg = self.config.model
        module = models.build_model(cfg.name, self.config.group.name, self.data.num_classes,
                                    in_channels=self.data.in_channels, width=cfg.width, **dict(cfg.overrides))
        module = module.to(self.device)
        self.params = models.count_parameters(module)
        self.macs = models.count_macs(module, tuple(self.train_x.shape[1:]))
        if self.ctx.distributed and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                        for m in module.modules()):
            module = distributed.convert_sync_batchnorm(module, self.device)
        if self.channels_last:
            for p in module.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
        self.module = module
        self.eval_model: nn.Module = torch.compile(module) if self.config.compile else module
        train_model: nn.Module = module
        if self.ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        self.train_model = torch.compile(train_model) if self.config.compile else train_model

    def build_optimization(self) -> None:
        order = torch.arange(len(self.train_x))
        self.steps_per_epoch = len(global_batches(order, self.config.batch_size, self.ctx.world_size))
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size={self.config.batch_size} leaves no training batch for "
                             f"{len(self.train_x)} images on {self.ctx.world_size} process(es)")
        self.optimizer = build_optimizer(self.module.parameters(), self.config.optim)
        self.scheduler = build_scheduler(self.optimizer, self.config.schedule, self.steps_per_epoch,
                                         self.config.epochs)
        fp16 = self.amp and self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    # ------------------------------------------------------------------ state
    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "history": self.history, "config": self.config_dict,
                "wall_time_s": self.previous_wall_time + (time.time() - self.start_time)}

    def resume(self) -> int:
        """Load ``checkpoint.pt`` if present; return the number of finished epochs."""
        checkpoint = load_checkpoint(self.run_dir)
        if checkpoint is None:
            return 0
        _check_same_config(self.run_dir, checkpoint["config"], self.config_dict)
        self.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_states(checkpoint["rng"])
        self.history = list(checkpoint["history"])
        self.previous_wall_time = float(checkpoint["wall_time_s"])
        if self.ctx.is_main:  # drop lines of an epoch that was killed after the checkpoint
            self.write_metrics()
        return int(checkpoint["epoch"])

    def write_metrics(self) -> None:
        write_text(self.run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in self.history))

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set in a seeded order; returns loss/error/time."""
        cfg, ctx = self.config, self.ctx
        _seed_everything(stream_seed(cfg.seed, epoch, 0, ctx.rank))  # dropout etc.
        order_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, epoch, 1))
        order = torch.randperm(len(self.train_x), generator=order_gen).to(self.device)
        augment_gen = torch.Generator(device=self.device).manual_seed(stream_seed(cfg.seed, epoch, 2))
        batches = global_batches(order, cfg.batch_size, ctx.world_size)
        self.train_model.train()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, errors
        count = 0
        bar = self.progress_bar(len(batches), epoch)
        start = time.time()
        for index in batches:
            x = self.augment(self.train_x[index], augment_gen)  # the global batch, same on every rank
            x, y = distributed.rank_slice(x, ctx), distributed.rank_slice(self.train_y[index], ctx)
            with self.autocast():
                logits = self.train_model(self.prepare_input(x))
            loss_sum = F.cross_entropy(logits.float(), y, reduction="sum",
                                       label_smoothing=cfg.label_smoothing)
            # mean over the GLOBAL batch once DDP has averaged the ranks' gradients
            loss = loss_sum * (ctx.world_size / index.numel())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            wrong = (logits.detach().argmax(1) != y).sum()
            totals += torch.stack([loss_sum.detach().double(), wrong.double()])
            count += y.numel()
            if bar is not None:
                bar.update(1)
        loss_total, wrong_total, count = self.reduce_totals(totals, count)  # syncs
        seconds = time.time() - start
        if bar is not None:
            bar.close()
        return {"train_loss": loss_total / count, "train_error": 100.0 * wrong_total / count,
                "train_time_s": seconds, "train_images": count}

    def progress_bar(self, total: int, epoch: int) -> Any:
        if not (self.progress and self.ctx.is_main):
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=f"epoch {epoch}/{self.config.epochs}", leave=False,
                    file=sys.stderr, unit="batch")

    def reduce_totals(self, totals: torch.Tensor, count: int) -> list[float]:
        """``[loss sum, errors, images]`` summed over the ranks; the image count is
        known on the host, so it joins the device sums only here, once per pass."""
        local = torch.cat([totals, totals.new_tensor([float(count)])])
        return distributed.all_reduce_sum(self.ctx, local).tolist()

    @torch.no_grad()
    def evaluate(self, x_all: torch.Tensor, y_all: torch.Tensor) -> tuple[float, float]:
        """Mean loss and error (%) over ``x_all``, sharded over the ranks and summed."""
        self.eval_model.eval()
        shard = torch.tensor_split(torch.arange(len(x_all), device=self.device), self.ctx.world_size)[self.ctx.rank]
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, errors
        for index in shard.split(self.config.eval_batch_size):
            with self.autocast():
                logits = self.eval_model(self.prepare_input(x_all[index]))
            y = y_all[index]
            totals += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                                   (logits.argmax(1) != y).sum().double()])
        loss_total, wrong_total, count = self.reduce_totals(totals, len(shard))
        return loss_total / count, 100.0 * wrong_total / count

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Re-estimate every BN's running mean/var as the average over the (un-augmented)
        training set in global batches of ``eval_batch_size``; dropout stays off."""
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        self.module.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            m.train()
        order = torch.arange(len(self.train_x), device=self.device)
        for index in global_batches(order, self.config.eval_batch_size, self.ctx.world_size):
            local = distributed.rank_slice(index, self.ctx)
            with self.autocast():
                self.module(self.prepare_input(self.train_x[local]))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.module.eval()

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        start = time.time()
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_epoch(epoch)
        if self.config.bn_recalibration:
            self.recalibrate_batchnorm()
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train["train_loss"],
                               "train_error": train["train_error"]}
        row["test_loss"], row["test_error"] = self.evaluate(self.test_x, self.test_y)
        if self.val is not None:
            row["val_loss"], row["val_error"] = self.evaluate(*self.val)
        row["lr"] = lr
        row["epoch_time_s"] = time.time() - start
        row["images_per_s"] = train["train_images"] / max(train["train_time_s"], 1e-9)
        return row

    def summary_line(self, row: dict[str, Any]) -> str:
        val = f"  val err {row['val_error']:.2f}%" if "val_error" in row else ""
        return (f"epoch {row['epoch']}/{self.config.epochs}  train loss {row['train_loss']:.4f} "
                f"err {row['train_error']:.2f}%  test loss {row['test_loss']:.4f} "
                f"err {row['test_error']:.2f}%{val}  lr {row['lr']:.1e}  {row['epoch_time_s']:.1f}s  "
                f"{row['images_per_s']:.0f} img/s")

    # ------------------------------------------------------------------ main
    def fit(self) -> dict[str, Any]:
        """Train (or resume) to ``epochs``, then write and return ``result.json``."""
        finished = read_result(self.run_dir)
        if finished is not None:
            _check_same_config(self.run_dir, finished.get("config", {}), self.config_dict)
            self.say(f"already finished: {self.run_dir} (final test error "
                     f"{finished['final_test_error']:.2f}%)")
            return finished
        self.start_time, self.previous_wall_time, self.history = time.time(), 0.0, []
        _configure_determinism(self.config.deterministic)
        _seed_everything(self.config.seed)
        self.load_data()
        self.build_model()
        self.build_optimization()
        done = self.resume()
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"run {self.run_dir}: {self.config.model.name}/{self.config.group.name} on "
                 f"{self.data.name} ({len(self.train_x)} train, {len(self.test_x)} test), "
                 f"{self.params:,} params, device {self.device} x{self.ctx.world_size}"
                 + (f", resuming after epoch {done}" if done else ""))
        logger = self.make_logger()
        try:
            for epoch in range(done + 1, self.config.epochs + 1):
                self.history.append(self.run_epoch(epoch))
                if self.ctx.is_main:
                    save_checkpoint(self.run_dir, self.state_dict(epoch))
                    self.write_metrics()
                    logger.log_epoch(self.history)
                self.say(self.summary_line(self.history[-1]))
            result = self.result()
            if self.ctx.is_main:
                write_json(self.run_dir / RESULT, result)
                logger.finish(result)
            distributed.barrier(self.ctx)
        finally:
            logger.close()
        self.say(f"finished: final test error {result['final_test_error']:.2f}% "
                 f"(best {result['best_test_error']:.2f}% at epoch {result['best_epoch']}), "
                 f"equivariance error {result['equivariance_error']:.2e} ({result['equivariance_group']})"
                 f" -> {self.run_dir / RESULT}")
        return result

    def make_logger(self) -> Logger:
        if not self.ctx.is_main:
            return Logger()
        c = self.config
        tags = [c.group.name, c.model.name, c.augment.name, str(c.data.get("name"))]
        return build_logger(c.logger, self.run_dir, self.config_dict, name="-".join(tags) + f"-seed{c.seed}",
                            group=c.sweep_name if self.multirun else None, tags=tags)

    def result(self) -> dict[str, Any]:
        c, last = self.config, self.history[-1]
        best = min(self.history, key=lambda row: (row["test_error"], row["epoch"]))
        measured = equivariance_group(c.group.name)
        images = self.test_x[: c.equivariance_images]
        error = measure_equivariance(self.module, images, measured, c.eval_batch_size) if self.ctx.is_main \
            else math.nan
        result = {
            "status": "finished", "model": c.model.name, "group": c.group.name, "augment": c.augment.name,
            "data": c.data.get("name"), "train_size": c.data.get("train_size"),
            "n_train": int(self.train_x.shape[0]), "seed": c.seed,
            "epochs": c.epochs, "final_test_error": last["test_error"], "final_test_loss": last["test_loss"],
            "best_test_error": best["test_error"], "best_epoch": best["epoch"],
            "final_train_loss": last["train_loss"], "final_train_error": last["train_error"],
            "params": self.params, "macs": self.macs, "equivariance_error": error,
            "equivariance_group": measured, "equivariance_images": int(images.shape[0]),
            "config": self.config_dict,
            **environment(self.device, self.ctx.world_size),
            "wall_time_s": self.previous_wall_time + (time.time() - self.start_time),
        }
        if "val_error" in last:
            best_val = min(self.history, key=lambda row: (row["val_error"], row["epoch"]))
            result.update(final_val_error=last["val_error"], best_val_error=best_val["val_error"],
                          best_val_epoch=best_val["epoch"],
                          test_error_at_best_val=best_val["test_error"])
        return result
