"""DistributedDataParallel plumbing: setup/teardown from torchrun's environment,
rank helpers, sums across ranks, and batch norm with statistics over the global batch.

Launched by ``torchrun --nproc_per_node=N``, each process sees ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is single-process and
every helper here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from repro.device import resolve_device

from .config import ConfigError

__all__ = ["DistContext", "setup", "teardown", "all_reduce_sum", "barrier",
           "convert_sync_batchnorm", "GlobalBatchNorm", "rank_slice"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> DistContext:
    """Join the process group if launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        resolved = resolve_device(device, local_rank)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, resolved)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (if this module joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over ranks (returned; the input is left alone)."""
    values = values.clone()
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def rank_slice(batch: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous chunk of a global batch (chunks differ by at most one)."""
    if not ctx.distributed:
        return batch
    return torch.tensor_split(batch, ctx.world_size)[ctx.rank]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is again the sum over ranks (every rank's output
    depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are over the global batch of all ranks,
    for any input ``(B, C, *)``; differentiable through the all-reduce, so it works
    with gloo on CPU where :class:`torch.nn.SyncBatchNorm` refuses to run.

    Same parameters and buffers (same state-dict keys) as the BatchNorm it replaces.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (B, C, ...), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = _AllReduceSum.apply(x.sum(dims)) / count
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                            else self.momentum)
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm by one with global-batch statistics:
    :class:`torch.nn.SyncBatchNorm` on CUDA, :class:`GlobalBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_global(module)


def _convert_global(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        reference = next(iter(module.parameters()), next(iter(module.buffers()), None))
        if reference is not None:
            new = new.to(device=reference.device, dtype=reference.dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_global(child))
    return module
