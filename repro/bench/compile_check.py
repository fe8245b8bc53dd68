"""Does ``torch.compile`` see whole graphs? :func:`graph_breaks` traces with ``torch._dynamo.explain``
(no code generation, fast); :func:`compile_matches_eager` really compiles (minutes per model on a
small CPU with inductor) and compares with eager mode.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

import gcnn
import models


def dynamo_counts() -> dict[str, int]:
    """``torch._dynamo``'s running totals of ``graphs`` and ``graph_breaks`` (``reset()`` does not
    clear them: compare two readings)."""
    from torch._dynamo.utils import counters
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def graph_breaks(module: nn.Module, *inputs: torch.Tensor) -> dict:
    """``{"graphs", "graph_breaks", "reasons"}`` of tracing ``module(*inputs)``."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module)(*inputs)
    reasons = [str(getattr(b, "reason", b)) for b in explained.break_reasons]
    return {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count, "reasons": reasons}


def compile_matches_eager(module: nn.Module, x: torch.Tensor, backend: str = "inductor",
                          rel_tol: float = 1e-3) -> dict:
    """Compile ``module`` (``fullgraph=True``) and compare ``compiled(x)`` with ``module(x)`` under
    ``no_grad``: ``{"ok", "max_abs_diff", "scale"}``, ok within ``rel_tol`` of the output's scale."""
    torch._dynamo.reset()
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    with torch.no_grad():
        expected = module(x)
        got = compiled(x)
    diff = (got - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-12)
    return {"ok": diff <= rel_tol * scale, "max_abs_diff": diff, "scale": scale}


def layer_modules(group: str, channels: int = 4, size: int = 8,
                  batch: int = 2) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Small G-layers of ``group`` with a matching input each, keyed by layer name."""
    image = torch.randn(batch, 3, size, size)
    features = torch.randn(batch, channels, gcnn.get_group(group).order, size, size)
    return {
        "LiftingConv2d": (gcnn.LiftingConv2d(3, channels, 3, group, padding=1), image),
        "GroupConv2d": (gcnn.GroupConv2d(channels, channels, 3, group, padding=1), features),
        "GroupBatchNorm2d": (gcnn.GroupBatchNorm2d(channels, group), features),
        "GroupPool": (gcnn.GroupPool(group), features),
        "SpatialPool2d": (gcnn.SpatialPool2d(2), features),
        "GlobalAvgPool": (gcnn.GlobalAvgPool(), features),
    }


def check_layers(groups: Iterable[str] = ("p4", "p4m")) -> list[dict]:
    """Graph breaks of every G-layer of every group, in train and eval mode."""
    rows = []
    for group in groups:
        for name, (module, x) in layer_modules(group).items():
            for mode in ("train", "eval"):
                module.train(mode == "train")
                rows.append({"layer": name, "group": group, "mode": mode, **graph_breaks(module, x)})
    return rows


def check_models(archs: Iterable[str], groups: Iterable[str], *, backend: str | None = None,
                 width: float = 0.25, log: Callable[[str], None] = print) -> list[dict]:
    """Graph breaks of every model (eval, ``width``-scaled, batch 2) and, with a ``backend``,
    whether the compiled model matches eager mode."""
    rows = []
    for arch in archs:
        for group in groups:
            shape = models.default_input_shape(arch)
            torch.manual_seed(0)
            model = models.build_model(arch, group, in_channels=shape[0], width=width).eval()
            x = torch.randn(2, *shape)
            row = {"arch": arch, "group": group, "width": width, **graph_breaks(model, x)}
            if backend is not None:
                row.update(backend=backend, **compile_matches_eager(model, x, backend))
            log(f"  {arch:9s} {group:4s} graphs {row['graphs']} breaks {row['graph_breaks']}"
                + (f" {backend} ok={row['ok']}" if backend else ""))
            rows.append(row)
    return rows
