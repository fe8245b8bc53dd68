"""What a model costs and how invariant it is: parameters, multiply-accumulates,
and the relative deviation of its logits under the group's transformations.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

import gcnn

from .registry import build_model, default_input_shape, reference_params

__all__ = ["count_parameters", "count_macs", "invariance_error", "ModelSummary", "summarize",
           "summary_table", "summary_report"]


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


@torch.no_grad()
def invariance_error(model: nn.Module, images: Tensor, group: str | gcnn.Group | None = None,
                     batch_size: int | None = None) -> float:
    """Mean over images of ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``.

    ``images``: ``(N, C, H, W)``, fed ``batch_size`` at a time (default: all);
    ``g`` runs over every element of ``group`` (default: ``model.group``) acting
    by rotation/flip about the image centre. The model runs as given: put it in
    eval mode (and float64 for round-off ~1e-16) first. 0 up to round-off means
    exactly invariant.
    """
    group = gcnn.get_group(group if group is not None else model.group)
    worst = [_worst_deviation(model, chunk, group) for chunk in images.split(batch_size or len(images))]
    return torch.cat(worst).mean().item()


def _worst_deviation(model: nn.Module, images: Tensor, group: gcnn.Group) -> Tensor:
    """Per image ``(B,)``: ``max_g |f(g x) - f(x)|_inf / |f(x)|_inf``."""
    logits = model(images)
    scale = logits.abs().amax(dim=1).clamp_min(torch.finfo(logits.dtype).tiny)
    worst = torch.zeros_like(scale)
    for g in range(1, group.order):
        moved = model(group.transform_image(images, g))
        worst = torch.maximum(worst, (moved - logits).abs().amax(dim=1) / scale)
    return worst


ODD_SIZE = 33  # 33 -> 17 -> 9: every stride-2 layer of the CIFAR nets samples symmetrically


@dataclass(frozen=True)
class ModelSummary:
    """One row of the model table; invariance errors are under ``invariance_group``."""

    arch: str
    group: str
    input_shape: tuple[int, int, int]
    params: int
    reference_params: int | None
    macs: int
    invariance_group: str
    invariance_error: float
    invariance_error_odd: float

    @property
    def params_diff_percent(self) -> float | None:
        """``100 * (params - reference) / reference``, or None without a reference."""
        if self.reference_params is None:
            return None
        return 100.0 * (self.params - self.reference_params) / self.reference_params


def summarize(arch: str, group: str, images: int = 2, seed: int = 0) -> ModelSummary:
    """Params and MACs of the full-size model at its input size ``(C, H, W)``, and
    the invariance error of a randomly initialised copy (float64, eval mode) on
    ``images`` random inputs of size ``H x W`` and of size ``ODD_SIZE x ODD_SIZE``,
    under its own group (z2 nets: under p4m, as a contrast)."""
    torch.manual_seed(seed)
    shape = default_input_shape(arch)
    model = build_model(arch, group, in_channels=shape[0])
    inv_group = "p4m" if group == "z2" else group
    probe = copy.deepcopy(model).double().eval()
    rng = torch.Generator().manual_seed(seed)
    errors = [invariance_error(probe, torch.randn(images, shape[0], size, size, generator=rng,
                                                  dtype=torch.float64), inv_group)
              for size in (shape[1], ODD_SIZE)]
    return ModelSummary(arch, group, shape, count_parameters(model), reference_params(arch, group),
                        count_macs(model, shape), inv_group, *errors)


def summary_table(rows: list[ModelSummary]) -> str:
    """Markdown table of :func:`summarize` rows."""
    lines = ["| arch | group | input | params | paper params | diff | MACs/image | invariance group "
             f"| inv. error at input size | inv. error at {ODD_SIZE}x{ODD_SIZE} |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        ref = "n/a" if r.reference_params is None else f"{r.reference_params:,}"
        diff = "n/a" if r.params_diff_percent is None else f"{r.params_diff_percent:+.2f}%"
        lines.append(f"| {r.arch} | {r.group} | {'x'.join(map(str, r.input_shape))} | {r.params:,} | {ref} "
                     f"| {diff} | {r.macs / 1e6:,.1f}M | {r.invariance_group} "
                     f"| {r.invariance_error:.1e} | {r.invariance_error_odd:.1e} |")
    return "\n".join(lines)


_NOTES = f"""\
- params: weights, biases and batch-norm scale/shift (no running statistics);
  paper params: the exact counts of the reference models (n/a where the paper has
  no such model). Only the p4m ResNets differ: the reference head feeds all
  `C3 * 8` group channels to the classifier, ours averages over the group first
  (invariant), so it has `C3 * 7 * 10` fewer weights; the rest matches exactly.
- MACs/image: multiply-accumulates of one image at the input size, counting every
  convolution with its group expansion (`C_out*G * C_in*G_in * k*k * H'*W'`) and
  the linear layer; batch norm, ReLU, pooling and additions are not counted.
- invariance error: mean over 2 random float64 images of
  `max_g |f(g x) - f(x)|_inf / |f(x)|_inf` over the group's rotations/flips, for a
  randomly initialised network in eval mode (z2 networks: measured under p4m, as
  a contrast). ~1e-16 is exact invariance up to round-off. Stride-2 layers on
  32x32 maps sample off the rotation centre, so the CIFAR G-CNNs are only
  approximately invariant there; at {ODD_SIZE}x{ODD_SIZE} every strided grid is
  symmetric and they are exact. rotmnist pools 2x2 without overlap: exact on even
  sizes (16x16), not on odd ones.
"""


def summary_report(rows: list[ModelSummary]) -> str:
    """The whole ``results/models.md``: title, table and notes on how each column is measured."""
    return (f"# Models: parameters, MACs and invariance\n\nGenerated by `python scripts/models.py "
            f"--out results/models.md` (torch {torch.__version__}).\n\n{summary_table(rows)}\n\n{_NOTES}")
