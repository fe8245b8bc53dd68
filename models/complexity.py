"""What a model costs and how invariant it is: parameters, multiply-accumulates, and the
relative deviation of its logits under the group (the table is
:mod:`repro.models_table`, printed by ``scripts/models_table.py``)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

import gcnn

def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BN scale and shift; no BN running stats)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """Multiply-accumulates for ONE image of shape ``input_shape = (C, H, W)``: convolutions
    with their group expansion (``C_out*G * C_in*G_in * k*k * H_out*W_out``) and ``nn.Linear``
    (``in * out``); batch norm, ReLU, pooling, dropout and residual additions are not counted.
    Runs one forward pass on zeros in eval mode, then restores every module's mode."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        # every output value is one dot product with a filter: weight[0] is one output channel's
        # filter (C_in*G_in*k*k for G-convs, C_in/groups*k*k for nn.Conv2d, in_features for nn.Linear)
        total += output[0].numel() * module.weight[0].numel()

    counted = (gcnn.LiftingConv2d, gcnn.GroupConv2d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with evaluating(model):
            model(torch.zeros(1, *input_shape).to(next(model.parameters())))
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


def invariance_error(model: nn.Module, images: Tensor, group: str | gcnn.Group | None = None) -> float:
    """Mean over ``images`` ``(N, C, H, W)`` of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``, ``g`` over
    ``group`` (default ``model.group``). The model runs as given: put it in eval mode (and float64 for
    round-off ~1e-16) first."""
    group = group if group is not None else model.group
    return gcnn.equivariance_error(model, images, group, invariant=True, reduction="mean")
