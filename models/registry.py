"""Build any (architecture, group) pair by name.

``build_model(arch, group)`` returns a module mapping ``(B, in_channels, H, W)``
to logits ``(B, num_classes)``, with ``model.arch`` and ``model.group`` set.
Widths are data (one table per family); ``width`` scales them for small runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

from torch import nn

import gcnn
from gcnn.validation import check_choice, check_int, check_number, invalid

from . import allcnnc, resnet, rotmnist

__all__ = ["ModelSpec", "build_model", "list_models", "get_spec", "scale_widths",
           "reference_params", "paper_name", "default_input_shape"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture.

    ``build(group, widths, num_classes=..., in_channels=..., **options)`` makes
    the module; ``widths[group]`` are the full-size widths; ``input_shape`` is
    the ``(C, H, W)`` the architecture is meant for; ``reference_params[group]``
    the paper's exact parameter count (groups the paper does not report are absent;
    the ResNets reach it with ``head="reference"``);
    ``options`` the extra keyword overrides the builder accepts;
    ``defaults[group]`` the values of those options per group where they differ (data,
    like the widths; an explicit override wins); ``paper_names[group]`` the network's name
    in the paper where it has its own (rotated MNIST, Table 1).
    """

    build: Callable[..., nn.Module]
    widths: Mapping[str, tuple[int, ...]]
    input_shape: tuple[int, int, int]
    reference_params: Mapping[str, int] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_names: Mapping[str, str] = field(default_factory=dict)


_SPECS: dict[str, ModelSpec] = {
    "allcnnc": ModelSpec(allcnnc.AllCNNC, allcnnc.WIDTHS, (3, 32, 32), allcnnc.REFERENCE_PARAMS,
                         options=("input_dropout", "dropout")),
    **{name: ModelSpec(partial(resnet.PreActResNet, blocks=resnet.BLOCKS[name]), resnet.WIDTHS[name],
                       (3, 32, 32), resnet.REFERENCE_PARAMS[name], options=("head",))
       for name in ("resnet44", "resnet26")},
    "rotmnist": ModelSpec(partial(rotmnist.RotMNISTNet, layout=rotmnist.DEMO), rotmnist.WIDTHS, (1, 16, 16)),
    "rotmnist_cnn": ModelSpec(partial(rotmnist.RotMNISTNet, layout=rotmnist.TABLE1), rotmnist.WIDTHS, (1, 28, 28),
                              rotmnist.REFERENCE_PARAMS, options=("dropout",),
                              defaults={g: {"dropout": p} for g, p in rotmnist.DROPOUT.items()},
                              paper_names=rotmnist.PAPER_NAMES),
    "rotmnist_cnn_rp": ModelSpec(partial(rotmnist.RotMNISTNet, layout=rotmnist.TABLE1_RP), rotmnist.RP_WIDTHS,
                                 (1, 28, 28), rotmnist.RP_REFERENCE_PARAMS, options=("dropout",),
                                 paper_names=rotmnist.RP_PAPER_NAMES),
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return list(_SPECS)


def get_spec(arch: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``arch``; ValueError naming the choices if unknown."""
    return _SPECS[check_choice("arch", arch, list_models())]


def _check_group(group: str | gcnn.Group) -> str:
    """The group's name; ``gcnn.get_group`` raises the ValueError naming the choices."""
    return gcnn.get_group(group).name


def scale_widths(widths: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Multiply each width by ``width`` and round, keeping at least 1 channel."""
    check_number("width", width, 0, strict=True)
    return tuple(max(1, round(w * width)) for w in widths)


def reference_params(arch: str, group: str) -> int | None:
    """The paper's exact parameter count for ``(arch, group)``, or None if it reports none."""
    return get_spec(arch).reference_params.get(_check_group(group))


def paper_name(arch: str, group: str) -> str | None:
    """The paper's name of ``(arch, group)`` where it has its own (``rotmnist_cnn`` on p4: ``"P4CNN"``)."""
    return get_spec(arch).paper_names.get(_check_group(group))


def default_input_shape(arch: str) -> tuple[int, int, int]:
    """``(C, H, W)`` the architecture is meant for: CIFAR ``(3, 32, 32)``, the rotated-MNIST
    networks of Table 1 ``(1, 28, 28)``, the demo's rotmnist ``(1, 16, 16)``."""
    return get_spec(arch).input_shape


def build_model(arch: str, group: str, num_classes: int = 10, *, in_channels: int = 3,
                width: float = 1.0, **overrides: Any) -> nn.Module:
    """Build ``arch`` (see :func:`list_models`) for ``group`` (``z2``, ``p4``, ``p4m``).

    ``width`` multiplies the per-stage widths (rounded, at least 1). Overrides:
    ``widths`` (explicit per-stage widths, still multiplied by ``width``) and the
    architecture's own options (``allcnnc``: ``input_dropout``, ``dropout``;
    ``resnet44``/``resnet26``: ``head="invariant"|"reference"``, the latter the
    reference code's head whose parameter counts equal the paper's;
    ``rotmnist_cnn``/``rotmnist_cnn_rp``: ``dropout``, by default 0.3 for rotmnist_cnn z2, else 0).
    Returns a module mapping ``(B, in_channels, H, W)`` to ``(B, num_classes)``.
    """
    spec = get_spec(arch)
    group = _check_group(group)
    check_int("num_classes", num_classes, 1)
    check_int("in_channels", in_channels, 1)
    base = tuple(overrides.pop("widths", spec.widths[group]))
    if len(base) != len(spec.widths[group]) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in base):
        raise invalid("widths", base, f"{len(spec.widths[group])} integers >= 1 for {arch}")
    for name in overrides:
        check_choice(f"{arch} override", name, ["widths", *spec.options])
    overrides = {**spec.defaults.get(group, {}), **overrides}
    model = spec.build(group, scale_widths(base, width), num_classes=num_classes,
                       in_channels=in_channels, **overrides)
    model.arch = arch
    return model
