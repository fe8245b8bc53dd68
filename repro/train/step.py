"""One training step, and the model preparation it runs on: the trainer's loop and the benchmark
(:mod:`repro.bench.training`) both call these, so the bench times exactly what a run trains.

A step: forward under autocast in the run's memory layout, float32 cross-entropy summed over the
batch, ``zero_grad``, backward through the GradScaler (a no-op unless float16 on CUDA), unscale and
clip when ``grad_clip`` is set, optimiser step (skipped by the scaler on inf/NaN gradients), scaler
update, scheduler step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.device import forward_in_layout, to_channels_last

from .optim import build_optimizer, build_scheduler

__all__ = ["TrainStep", "prepare_model", "build_train_step", "train_step"]


@dataclass
class TrainStep:
    """What one step needs besides the batch; built once per run by :func:`build_train_step`."""

    model: nn.Module             # what trains: the module, or its DDP and/or compiled wrapper
    module: nn.Module            # the module itself: its parameters are clipped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: str | None        # autocast dtype, None without amp
    channels_last: bool
    grad_clip: float | None
    label_smoothing: float


def prepare_model(module: nn.Module, device: torch.device, *, channels_last: bool, compiled: bool,
                  distributed: bool = False, compile_backend: str = "inductor") -> tuple[nn.Module, nn.Module,
                                                                                          nn.Module]:
    """``(module, train_model, eval_model)`` on ``device``: channels_last weights if asked, global-batch
    BN and DDP under torchrun, ``torch.compile`` with static shapes (one graph per shape family)."""
    from . import distributed as dist_tools

    module = module.to(device)
    if channels_last:
        to_channels_last(module)
    train_model = eval_model = module
    if distributed:  # batch norm over the global batch, gradients averaged by DDP
        module = eval_model = dist_tools.convert_sync_batchnorm(module, device)
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if compiled:
        train_model = torch.compile(train_model, backend=compile_backend, dynamic=False)
        eval_model = torch.compile(module, backend=compile_backend, dynamic=False)
    return module, train_model, eval_model


def build_train_step(config: Any, module: nn.Module, train_model: nn.Module, device: torch.device, *,
                     steps_per_epoch: int, amp_dtype: str | None, channels_last: bool) -> TrainStep:
    """The optimiser, per-step schedule and grad scaler of ``config`` (a :class:`TrainConfig`) for ``module``."""
    optimizer = build_optimizer(module.parameters(), config.optim)
    scheduler = build_scheduler(optimizer, config.schedule, steps_per_epoch, config.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == "float16" and device.type == "cuda")
    return TrainStep(train_model, module, optimizer, scheduler, scaler, amp_dtype, channels_last,
                     config.grad_clip, config.label_smoothing)


def train_step(step: TrainStep, x: torch.Tensor, y: torch.Tensor, loss_scale: float) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """One optimiser step on images ``x`` ``(B, C, H, W)`` and labels ``y`` ``(B,)``; the loss minimised
    is the summed cross-entropy times ``loss_scale`` (the world size over the global batch size, so
    that DDP's average is the global batch mean). Returns the detached float32 loss sum and logits; no host
    sync (a non-finite loss is the caller's to check)."""
    logits = forward_in_layout(step.model, x, step.amp_dtype, step.channels_last)
    loss_sum = F.cross_entropy(logits.float(), y, reduction="sum", label_smoothing=step.label_smoothing)
    step.optimizer.zero_grad(set_to_none=True)
    step.scaler.scale(loss_sum * loss_scale).backward()
    if step.grad_clip is not None:
        step.scaler.unscale_(step.optimizer)
        nn.utils.clip_grad_norm_(step.module.parameters(), step.grad_clip)
    step.scaler.step(step.optimizer)
    step.scaler.update()
    step.scheduler.step()
    return loss_sum.detach(), logits.detach()
