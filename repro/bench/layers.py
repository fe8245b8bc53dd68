"""Layer overhead: a G-conv layer (``gcnn``) against ``F.conv2d`` on its pre-expanded bank
(``conv2d``, its speed limit), torch's ``nn.Conv2d`` of that shape (the cost of being a module)
and escnn's ``R2Conv`` between regular fields of C4 / D4 (when escnn is installed)."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

import gcnn
from gcnn.validation import check_choice

from .timing import interleaved_timings, ratio

MODES = ("train", "eval")
SIZES = ("tiny", "medium", "cifar")
BASELINE = "conv2d"
QUICK_ROUNDS = {"tiny": 7, "medium": 5}    # the sizes (and timing rounds) of a smoke run
FULL_ROUNDS = {"tiny": 21, "medium": 11, "cifar": 5}  # cifar: 3 rounds left medians at the mercy of one slow sample
# size: (batch, {group: [(in_channels, out_channels, spatial)]}); 3 input channels = a lifting layer.
# CIFAR: the paper's All-CNN-C widths (p4 48/96, p4m 32/64).
_SHAPES = {
    "tiny": (1, {g: [(3, 8, 8), (8, 8, 8)] for g in ("p4", "p4m")}),
    "medium": (8, {g: [(3, 16, 16), (16, 16, 16)] for g in ("p4", "p4m")}),
    "cifar": (128, {"p4": [(3, 48, 32), (48, 48, 32), (96, 96, 16)],
                    "p4m": [(3, 32, 32), (32, 32, 32), (64, 64, 16)]}),
}
_GSPACES = {"p4": ("rot2dOnR2", {"N": 4}), "p4m": ("flipRot2dOnR2", {"N": 4})}   # C4, D4


@dataclass(frozen=True)
class LayerCase:
    """One 3x3 layer, padding 1: input ``(B, C_in[, G], H, W)``, output ``(B, C_out, G, H, W)``."""

    size: str
    kind: str
    group: str
    batch: int
    in_channels: int
    out_channels: int
    spatial: int

    def __post_init__(self) -> None:
        check_choice("size", self.size, SIZES)
        check_choice("kind", self.kind, ["lifting", "group"])
        check_choice("group", self.group, list(_GSPACES))

    @property
    def name(self) -> str:
        return (f"{self.kind} {self.group} {self.in_channels}->{self.out_channels} "
                f"{self.spatial}x{self.spatial} b{self.batch}")


def default_cases(sizes: Iterable[str] = SIZES) -> list[LayerCase]:
    """The layers of ``_SHAPES`` at ``sizes``."""
    return [LayerCase(size, "lifting" if c_in == 3 else "group", group, _SHAPES[size][0], c_in, c_out, spatial)
            for size in sizes for group, layers in _SHAPES[size][1].items() for c_in, c_out, spatial in layers]


def escnn_version() -> str | None:
    """escnn's version string when it imports, else ``None`` (the benchmark skips its column)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import escnn
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return str(getattr(escnn, "__version__", "unknown"))


class EscnnConv(nn.Module):
    """escnn's 3x3 ``R2Conv`` on plain tensors: ``(B, C_in * G_in, H, W) -> (B, C_out * G, H, W)``;
    lifting: ``in_channels`` trivial fields, else regular fields, to ``out_channels`` regular fields."""

    def __init__(self, group: str, lifting: bool, in_channels: int, out_channels: int) -> None:
        super().__init__()
        factory, kwargs = _GSPACES[check_choice("group", group, list(_GSPACES))]
        from escnn import gspaces
        from escnn import nn as enn
        space = getattr(gspaces, factory)(**kwargs)
        in_type = enn.FieldType(space, in_channels * [space.trivial_repr if lifting else space.regular_repr])
        out_type = enn.FieldType(space, out_channels * [space.regular_repr])
        self.conv = enn.R2Conv(in_type, out_type, 3, padding=1, bias=True)
        self.wrap = enn.GeometricTensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.wrap(x, self.conv.in_type)).tensor


@dataclass
class LayerPair:
    """A gcnn layer and its plain-conv limit on the same data: ``x_flat (B, C_in*G_in, H, W)``
    holds ``x``'s values and ``weight`` / ``bias`` the expanded bank, so ``plain()`` equals
    ``layer(x).flatten(1, 2)``."""

    layer: nn.Module
    x: torch.Tensor
    x_flat: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def plain(self) -> torch.Tensor:
        return F.conv2d(self.x_flat, self.weight, self.bias, padding=1)


def build_pair(case: LayerCase, device: torch.device, *, requires_grad: bool = True,
               dtype: torch.dtype = torch.float32) -> LayerPair:
    """The :class:`LayerPair` of ``case``, parameters and input drawn from seed 0."""
    torch.manual_seed(0)
    lifting = case.kind == "lifting"
    cls = gcnn.LiftingConv2d if lifting else gcnn.GroupConv2d
    layer = cls(case.in_channels, case.out_channels, 3, case.group, padding=1, bias=True).to(device, dtype)
    shape = (case.batch, case.in_channels, *(() if lifting else (layer.group.order,)), case.spatial, case.spatial)
    x = torch.randn(shape, device=device, dtype=dtype)
    x_flat = x.clone() if lifting else x.flatten(1, 2).clone()
    for leaf in (x, x_flat):   # a lifting layer is the first layer: only group inputs need grad
        leaf.requires_grad_(requires_grad and not lifting)
    weight, bias = (t.detach().clone().requires_grad_(requires_grad) for t in layer.expanded_weight())
    return LayerPair(layer, x, x_flat, weight, bias)


def _step(forward: Callable[[], torch.Tensor], inputs: list[torch.Tensor], mode: str) -> Callable[[], object]:
    """One unit of work: eval = ``forward()`` under ``no_grad`` (the layer uses its cached bank);
    train = forward + backward to ``inputs`` (weight, bias and, for group layers, the input)."""
    if mode == "eval":
        return torch.no_grad()(forward)
    grad = torch.randn_like(forward())
    return lambda: torch.autograd.grad(forward(), inputs, grad)


def _module_step(module: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    module.train(mode == "train")
    return _step(lambda: module(x), [*module.parameters(), *([x] if x.requires_grad else [])], mode)


def bench_layer_case(case: LayerCase, mode: str, device: torch.device, *, rounds: int, warmup: int = 1,
                     min_sample_s: float = 0.0, with_escnn: bool = False) -> dict:
    """Time every candidate of one case and mode, interleaved; ratios are relative to ``conv2d``."""
    check_choice("mode", mode, MODES)
    pair = build_pair(case, device, requires_grad=mode == "train")
    flat_inputs = [pair.weight, pair.bias, *([pair.x_flat] if pair.x_flat.requires_grad else [])]
    candidates = {"gcnn": _module_step(pair.layer, pair.x, mode), BASELINE: _step(pair.plain, flat_inputs, mode)}
    if case.size != "cifar":   # the module's fixed cost only matters where the conv is small
        reference = nn.Conv2d(pair.weight.shape[1], pair.weight.shape[0], 3, padding=1)
        candidates["nn.Conv2d"] = _module_step(reference.to(device), pair.x_flat, mode)
    if with_escnn:
        anchor = EscnnConv(case.group, case.kind == "lifting", case.in_channels, case.out_channels)
        candidates["escnn"] = _module_step(anchor.to(device), pair.x_flat, mode)
    timings = interleaved_timings(candidates, rounds=rounds, warmup=warmup, min_sample_s=min_sample_s, device=device)
    macs = case.batch * case.spatial ** 2 * pair.weight.numel()   # per output pixel: one MAC per bank entry
    row = {"case": asdict(case), "name": case.name, "size": case.size, "mode": mode, "macs": macs,
           "rounds": rounds, "timings": timings,
           "ratios": {name: ratio(t, timings[BASELINE]) for name, t in timings.items() if name != BASELINE}}
    if "escnn" in timings:
        row["gcnn_vs_escnn"] = ratio(timings["gcnn"], timings["escnn"])
    return row


def bench_layers(device: torch.device, *, quick: bool, with_escnn: bool,
                 log: Callable[[str], None] = print) -> list[dict]:
    """:func:`bench_layer_case` for every case and mode of :data:`FULL_ROUNDS` (``quick``: :data:`QUICK_ROUNDS`)."""
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    log(f"layer overhead ({', '.join(rounds)}; escnn {'on' if with_escnn else 'off'})")
    rows = []
    for case in default_cases(rounds):
        for mode in MODES:
            row = bench_layer_case(case, mode, device, rounds=rounds[case.size], with_escnn=with_escnn,
                                   min_sample_s=0.005 if quick else 0.02)
            rows.append(row)
            ratios = ", ".join(f"{n} {r['ratio_of_medians']:.3f}x" for n, r in row["ratios"].items())
            log(f"  {case.size:6s} {mode:5s} {case.name:34s} conv2d "
                f"{row['timings'][BASELINE]['median_s'] * 1e3:9.3f} ms | {ratios}")
    return rows
