"""What a model costs and how invariant it is: parameters, multiply-accumulates,
and the relative deviation of its logits under the group's transformations
(the model table is written by ``scripts/models.py``).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

import gcnn

__all__ = ["count_parameters", "count_macs", "invariance_error", "evaluating"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BN scale and shift; no BN running stats)."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Module, output: Tensor) -> int:
    """MACs of one image through a G-conv or a plain conv: ``C_out*G * C_in*G_in * k*k * H'*W'``."""
    if isinstance(module, (gcnn.LiftingConv2d, gcnn.GroupConv2d)):
        c_out, c_in = module.out_channels * module.group.order, module.in_channels * module.in_order
        taps = module.kernel_size ** 2
    else:
        c_out, c_in = module.out_channels, module.in_channels // module.groups
        taps = module.kernel_size[0] * module.kernel_size[1]
    return c_out * c_in * taps * output.shape[-2] * output.shape[-1]


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """Multiply-accumulates for ONE image of shape ``input_shape = (C, H, W)``.

    Counts convolutions (lifting and group convs with their group expansion,
    ``C_out*G * C_in*G_in * k*k * H_out*W_out``, and plain ``nn.Conv2d``) and
    ``nn.Linear`` (``in * out``); batch norm, ReLU, pooling, dropout and the
    residual additions are ignored. Runs one forward pass in eval mode on a
    ``(1, *input_shape)`` zero tensor and restores the training flag.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        else:
            total += _conv_macs(module, output)

    counted = (gcnn.LiftingConv2d, gcnn.GroupConv2d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with evaluating(model):
            param = next(model.parameters(), None)
            kwargs = {} if param is None else {"dtype": param.dtype, "device": param.device}
            model(torch.zeros(1, *input_shape, **kwargs))
    finally:
        for handle in handles:
            handle.remove()
    return total


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then give every submodule back its own mode
    (``model.train(was_training)`` would also flip deliberately frozen parts)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:  # parents come first, so children end in their own mode
            module.train(training)


def invariance_error(model: nn.Module, images: Tensor, group: str | gcnn.Group | None = None,
                     batch_size: int | None = None) -> float:
    """Mean over images of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``: the logits'
    :func:`gcnn.equivariance_error` (``invariant=True``, ``reduction="mean"``).

    ``images``: ``(N, C, H, W)``, fed ``batch_size`` at a time (default: all);
    ``g`` runs over every element of ``group`` (default: ``model.group``). The model
    runs as given: put it in eval mode (and float64 for round-off ~1e-16) first.
    """
    group = gcnn.get_group(group if group is not None else model.group)
    chunks = images.split(batch_size or len(images))
    total = sum(gcnn.equivariance_error(model, chunk, group, invariant=True, reduction="mean") * len(chunk)
                for chunk in chunks)
    return total / len(images)
