"""Layer overhead: a G-conv layer against ``F.conv2d`` with its pre-expanded bank.

A G-conv is one ``conv2d`` with an expanded filter bank, so the plain ``conv2d`` of
the same shape is its speed limit. For each :class:`LayerCase` and mode the candidates are

* ``gcnn``: the :mod:`gcnn` layer (train: forward + backward to the weight, bias and,
  for group layers, the input; eval: ``layer.eval()`` under ``torch.no_grad()``, which
  uses the cached bank);
* ``conv2d``: ``F.conv2d(x_flat, w, b)`` with ``w (C_out*G, C_in*G_in, k, k)`` and
  ``b (C_out*G,)`` leaf tensors, the same gradients in train mode;
* ``nn.Conv2d`` (tiny and medium sizes): torch's own module of that shape, what
  merely being an ``nn.Module`` costs;
* ``escnn``: the same layer from escnn when it is installed.

Inputs are ``(B, C_in, H, W)`` for lifting and ``(B, C_in, G, H, W)`` for group
layers; outputs ``(B, C_out, G, H, W)`` (``padding = k // 2``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

import gcnn
from repro.device import autocast

from .escnn_anchor import build_escnn_conv
from .timing import interleaved_timings, ratio

MODES = ("train", "eval")
SIZES = ("tiny", "medium", "cifar")
BASELINE = "conv2d"
MODULE_REFERENCE = "nn.Conv2d"   # torch's own module of the expanded shape: the cost of being a module
# size: (batch, {group: [(in_channels, out_channels, spatial)]}); 3 input channels = a lifting layer.
# CIFAR: the paper's All-CNN-C widths (p4 48/96, p4m 32/64).
_SHAPES = {
    "tiny": (1, {g: [(3, 8, 8), (8, 8, 8)] for g in ("p4", "p4m")}),
    "medium": (8, {g: [(3, 16, 16), (16, 16, 16)] for g in ("p4", "p4m")}),
    "cifar": (128, {"p4": [(3, 48, 32), (48, 48, 32), (96, 96, 16)],
                    "p4m": [(3, 32, 32), (32, 32, 32), (64, 64, 16)]}),
}


@dataclass(frozen=True)
class LayerCase:
    """One layer shape: ``kind`` is ``lifting`` or ``group``, ``size`` a label from :data:`SIZES`."""

    size: str
    kind: str
    group: str
    batch: int
    in_channels: int
    out_channels: int
    spatial: int
    kernel_size: int = 3

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {list(SIZES)}")
        if self.kind not in ("lifting", "group"):
            raise ValueError(f"unknown layer kind {self.kind!r}; expected one of ['lifting', 'group']")
        if self.group not in ("p4", "p4m"):
            raise ValueError(f"unknown group {self.group!r} for a layer case; expected one of ['p4', 'p4m']")

    @property
    def name(self) -> str:
        return (f"{self.kind} {self.group} {self.in_channels}->{self.out_channels} "
                f"{self.spatial}x{self.spatial} b{self.batch}")

    @property
    def order(self) -> int:
        return gcnn.get_group(self.group).order

    @property
    def in_order(self) -> int:
        return 1 if self.kind == "lifting" else self.order

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of the whole batch."""
        return (self.batch * self.spatial ** 2 * self.out_channels * self.order
                * self.in_channels * self.in_order * self.kernel_size ** 2)


def default_cases(sizes: Iterable[str] = SIZES) -> list[LayerCase]:
    """The layers of :data:`_SHAPES`: tiny (b1, 8 channels, 8x8), medium (b8, 16 channels,
    16x16) and CIFAR (b128, the paper's All-CNN-C widths at 32x32 and 16x16)."""
    cases = []
    for size in sizes:
        if size not in _SHAPES:
            raise ValueError(f"unknown size {size!r}; expected one of {list(SIZES)}")
        batch, shapes = _SHAPES[size]
        cases += [LayerCase(size, "lifting" if c_in == 3 else "group", group, batch, c_in, c_out, spatial)
                  for group, layers in shapes.items() for c_in, c_out, spatial in layers]
    return cases


def _train_step(forward: Callable[[], torch.Tensor], inputs: list[torch.Tensor], device: torch.device,
                amp: str | None, generator: torch.Generator) -> Callable[[], None]:
    with autocast(device, amp):
        y = forward()
    grad = torch.randn(y.shape, generator=generator).to(device=device, dtype=y.dtype)

    def step() -> None:
        with autocast(device, amp):
            out = forward()
        torch.autograd.grad(out, inputs, grad)
    return step


def _eval_step(forward: Callable[[], torch.Tensor], device: torch.device, amp: str | None) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad(), autocast(device, amp):
            forward()
    return step


def _module_step(module: nn.Module, x: torch.Tensor, mode: str, device: torch.device, amp: str | None,
                 generator: torch.Generator) -> Callable[[], None]:
    module.train(mode == "train")
    if mode == "eval":
        return _eval_step(lambda: module(x), device, amp)
    inputs = [p for p in module.parameters() if p.requires_grad] + ([x] if x.requires_grad else [])
    return _train_step(lambda: module(x), inputs, device, amp, generator)


@dataclass
class LayerPair:
    """A gcnn layer and its plain-conv limit on the same data: ``x`` is the layer's input,
    ``x_flat (B, C_in*G_in, H, W)`` the same values as a separate leaf, and the ``weight``
    / ``bias`` leaves hold the layer's expanded bank, so ``plain()`` equals
    ``layer(x).flatten(1, 2)``."""

    layer: nn.Module
    x: torch.Tensor
    x_flat: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    padding: int

    def plain(self) -> torch.Tensor:
        return F.conv2d(self.x_flat, self.weight, self.bias, padding=self.padding)


def build_pair(case: LayerCase, device: torch.device, *, requires_grad: bool = True,
               dtype: torch.dtype = torch.float32, seed: int = 0) -> LayerPair:
    """The :class:`LayerPair` of ``case``, parameters and input drawn from ``seed``."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    padding, lifting = case.kernel_size // 2, case.kind == "lifting"
    cls = gcnn.LiftingConv2d if lifting else gcnn.GroupConv2d
    layer = cls(case.in_channels, case.out_channels, case.kernel_size, case.group, padding=padding, bias=True)
    layer = layer.to(device=device, dtype=dtype)
    shape = (case.batch, case.in_channels, *(() if lifting else (case.order,)), case.spatial, case.spatial)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    x_flat = x.clone() if lifting else x.flatten(1, 2).clone()
    for leaf in (x, x_flat):   # a lifting layer is the first layer: only group inputs need grad
        leaf.requires_grad_(requires_grad and not lifting)
    weight, bias = (t.detach().clone().requires_grad_(requires_grad) for t in layer.expanded_weight())
    return LayerPair(layer, x, x_flat, weight, bias, padding)


def layer_candidates(case: LayerCase, mode: str, device: torch.device, *, amp: str | None = None,
                     with_escnn: bool = False, seed: int = 0) -> dict[str, Callable[[], None]]:
    """Zero-argument callables, one unit of work each, keyed by candidate name."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    generator = torch.Generator().manual_seed(seed + 1)
    pair = build_pair(case, device, requires_grad=mode == "train", seed=seed)
    candidates = {"gcnn": _module_step(pair.layer, pair.x, mode, device, amp, generator)}
    if mode == "train":
        inputs = [pair.weight, pair.bias] + ([pair.x_flat] if pair.x_flat.requires_grad else [])
        candidates[BASELINE] = _train_step(pair.plain, inputs, device, amp, generator)
    else:
        candidates[BASELINE] = _eval_step(pair.plain, device, amp)
    if case.size != "cifar":   # the module's fixed cost only matters where the conv is small
        reference = nn.Conv2d(pair.weight.shape[1], pair.weight.shape[0], case.kernel_size,
                              padding=pair.padding).to(device)
        candidates[MODULE_REFERENCE] = _module_step(reference, pair.x_flat, mode, device, amp, generator)
    if with_escnn:
        anchor = build_escnn_conv(case.group, case.kind == "lifting", case.in_channels, case.out_channels,
                                  case.kernel_size, pair.padding).to(device)
        candidates["escnn"] = _module_step(anchor, pair.x_flat, mode, device, amp, generator)
    return candidates


def bench_layer_case(case: LayerCase, mode: str, device: torch.device, *, rounds: int, warmup: int = 1,
                     min_sample_s: float = 0.0, amp: str | None = None, with_escnn: bool = False) -> dict:
    """Time all candidates of one case and mode; ratios are relative to ``conv2d``."""
    candidates = layer_candidates(case, mode, device, amp=amp, with_escnn=with_escnn)
    timings = interleaved_timings(candidates, rounds=rounds, warmup=warmup,
                                  min_sample_s=min_sample_s, device=device)
    base = timings[BASELINE]
    row = {"case": asdict(case), "name": case.name, "size": case.size, "mode": mode,
           "macs": case.macs, "rounds": rounds,
           "timings": {name: t.as_dict() for name, t in timings.items()},
           "ratios": {name: ratio(t, base) for name, t in timings.items() if name != BASELINE}}
    if "escnn" in timings:
        row["gcnn_vs_escnn"] = ratio(timings["gcnn"], timings["escnn"])
    return row


def bench_layers(cases: Iterable[LayerCase], device: torch.device, *, rounds: Mapping[str, int],
                 min_sample_s: float, amp: str | None, with_escnn: bool,
                 log: Callable[[str], None] = print) -> list[dict]:
    """:func:`bench_layer_case` for every case and mode; ``rounds`` maps a size to its round count."""
    rows = []
    for case in cases:
        for mode in MODES:
            row = bench_layer_case(case, mode, device, rounds=rounds[case.size], min_sample_s=min_sample_s,
                                   amp=amp, with_escnn=with_escnn)
            rows.append(row)
            ratios = ", ".join(f"{n} {r['ratio_of_medians']:.3f}x" for n, r in row["ratios"].items())
            log(f"  {case.size:6s} {mode:5s} {case.name:34s} conv2d "
                f"{row['timings'][BASELINE]['median_s'] * 1e3:9.3f} ms | {ratios}")
    return rows
