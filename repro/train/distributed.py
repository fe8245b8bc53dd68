"""DistributedDataParallel plumbing: the process group from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), sums across ranks, and batch norm with
statistics over the global batch. In a single process every helper is a no-op."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce  # its gradient: the sum too
from torch import nn

from repro.device import resolve_device

from .config import ConfigError

__all__ = ["DistContext", "setup", "convert_sync_batchnorm", "GlobalBatchNorm"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def teardown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` over ranks, in place; returns them."""
        if self.distributed:
            dist.all_reduce(values)
        return values

    def rank_slice(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous chunk of a global batch (chunks differ by at most one)."""
        return torch.tensor_split(batch, self.world_size)[self.rank] if self.distributed else batch


def setup(device: str) -> DistContext:
    """Join the process group if launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        resolved = resolve_device(device, local_rank)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, resolved)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all ranks for any input ``(B, C, *)``, differentiable
    through the all-reduce, so it runs on gloo where :class:`torch.nn.SyncBatchNorm` refuses to.
    Same parameters and buffers as the BatchNorm it replaces."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (B, C, ...), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims, shape = [0, *range(2, x.dim())], (1, -1) + (1,) * (x.dim() - 2)
        sums = differentiable_all_reduce(torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])]))
        count = sums[-1].detach()  # one all-reduce for the sums and the global count
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = differentiable_all_reduce(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm by one with global-batch statistics: :class:`torch.nn.SyncBatchNorm`
    on CUDA, :class:`GlobalBatchNorm` elsewhere (sharing the replaced one's tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict(), assign=True)  # keeps their dtype and device
        return new.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module
