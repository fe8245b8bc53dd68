"""models: registry, parameter counts vs the paper, MACs, forward/backward and invariance."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

import gcnn
import models
from models import allcnnc, resnet, rotmnist

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("allcnnc", "resnet44", "resnet26", "rotmnist")
CIFAR_ARCHS = ("allcnnc", "resnet44", "resnet26")
PAIRS = [(arch, group) for arch in ARCHS for group in gcnn.GROUP_NAMES]
INVARIANCE_TOL = 1e-10  # float64 round-off; stricter than the 1e-7


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: on the shared 2-core machine, intra-op threads mostly
    spin-wait (5x slower under load). Run this module single-threaded, then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@lru_cache(maxsize=None)
def full_model(arch: str, group: str) -> nn.Module:
    """Full-size model with the input channels its table row uses (built once per session)."""
    torch.manual_seed(0)
    return models.build_model(arch, group, in_channels=models.default_input_shape(arch)[0])


def randomize_batchnorm(model: nn.Module, rng: torch.Generator) -> nn.Module:
    """Give every BN layer random running stats and affine parameters (per channel),
    so eval-mode BN is far from the identity and the invariance tests see it."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n, dtype = m.num_features, m.running_mean.dtype
            m.running_mean.copy_(torch.randn(n, generator=rng, dtype=dtype))
            m.running_var.copy_(torch.rand(n, generator=rng, dtype=dtype) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=rng, dtype=dtype))
                m.bias.copy_(torch.randn(n, generator=rng, dtype=dtype))
    return model


def float64_eval_model(arch: str, group: str, rng: torch.Generator, width: float, in_channels: int = 3):
    torch.manual_seed(0)
    model = models.build_model(arch, group, width=width, in_channels=in_channels).double().eval()
    return randomize_batchnorm(model, rng)


# ----------------------------------------------------------------- registry
def test_list_models_names_every_arch():
    assert models.list_models() == list(ARCHS)


@pytest.mark.parametrize("arch,group", PAIRS)
def test_build_model_sets_arch_and_group(arch, group):
    model = models.build_model(arch, group, width=0.25)
    assert model.arch == arch
    assert model.group is gcnn.get_group(group)


def test_unknown_arch_raises_listing_the_choices():
    with pytest.raises(ValueError, match="unknown arch 'vgg16'") as info:
        models.build_model("vgg16", "p4")
    for arch in ARCHS:
        assert repr(arch) in str(info.value)


@pytest.mark.parametrize("bad_group", ["p6", "Z2", None])
def test_unknown_group_raises_listing_the_choices(bad_group):
    with pytest.raises(ValueError, match=f"unknown group {bad_group!r}") as info:
        models.build_model("allcnnc", bad_group)
    for group in gcnn.GROUP_NAMES:
        assert repr(group) in str(info.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 0}, "width multiplier"),
    ({"width": -1.0}, "width multiplier"),
    ({"width": float("nan")}, "width multiplier"),
    ({"width": True}, "width multiplier"),
    ({"num_classes": 0}, "num_classes"),
    ({"in_channels": 2.0}, "in_channels"),
    ({"widths": (8, 16, 32)}, "widths for allcnnc must be 2 ints"),
    ({"widths": (8, 0)}, "widths for allcnnc must be 2 ints"),
    ({"depth": 20}, r"unknown override\(s\) \['depth'\] for allcnnc; expected any of "
                    r"\['widths', 'input_dropout', 'dropout'\]"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_model("allcnnc", "p4", **kwargs)


def test_resnet_rejects_allcnnc_options():
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['dropout'\] for resnet44"):
        models.build_model("resnet44", "z2", dropout=0.1)


def test_width_multiplier_scales_and_rounds_every_width():
    assert models.scale_widths((96, 192), 0.25) == (24, 48)
    assert models.scale_widths((11, 23, 45), 0.5) == (6, 12, 22)  # round half to even, as Python does
    assert models.scale_widths((7,), 0.01) == (1,)
    model = models.build_model("allcnnc", "p4m", width=0.25)
    convs = [m for m in model.modules() if isinstance(m, (gcnn.LiftingConv2d, gcnn.GroupConv2d))]
    assert [c.out_channels for c in convs] == [8, 8, 8, 16, 16, 16, 16, 16, 10]


def test_explicit_widths_override():
    model = models.build_model("resnet44", "p4", widths=(4, 5, 6))
    assert model.stem.out_channels == 4
    assert model.classifier.in_features == 6


def test_allcnnc_dropout_options_reach_the_model():
    model = models.build_model("allcnnc", "z2", input_dropout=0.1, dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.3, 0.3]


@pytest.mark.parametrize("table", [resnet.WIDTHS["resnet44"], resnet.WIDTHS["resnet26"], rotmnist.WIDTHS])
def test_group_widths_are_z2_widths_over_sqrt_order(table):
    for group in ("p4", "p4m"):
        order = gcnn.get_group(group).order
        assert table[group] == tuple(round(w / math.sqrt(order)) for w in table["z2"])


# ----------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("arch,group", [(a, g) for a, g in PAIRS if models.reference_params(a, g)])
def test_parameter_count_within_one_percent_of_the_paper(arch, group):
    ours, paper = models.count_parameters(full_model(arch, group)), models.reference_params(arch, group)
    assert abs(ours - paper) / paper < 0.01


@pytest.mark.parametrize("arch,group", [(a, g) for a, g in PAIRS if models.reference_params(a, g)])
def test_parameter_count_is_exact_up_to_the_documented_head_difference(arch, group):
    """Everything matches the reference exactly; only the p4m ResNet head differs:
    the reference classifier sees C3 * G features, ours the group average (C3)."""
    model = full_model(arch, group)
    head_difference = 0
    if isinstance(model, models.PreActResNet):
        head_difference = model.classifier.in_features * (model.group.order - 1) * 10
    assert models.count_parameters(model) + head_difference == models.reference_params(arch, group)


def test_reference_counts_only_where_the_paper_reports_them():
    assert models.reference_params("resnet44", "p4") is None
    assert models.reference_params("rotmnist", "z2") is None
    with pytest.raises(ValueError, match="unknown group 'p8'"):
        models.reference_params("allcnnc", "p8")


def test_count_parameters_counts_weights_biases_and_bn_affine_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert models.count_parameters(model) == 3 * 4 + 4 + 4 + 4


# ----------------------------------------------------------------- MACs
def test_count_macs_of_hand_computed_layers():
    model = nn.Sequential(gcnn.LiftingConv2d(1, 2, 3, "p4", padding=1), gcnn.GroupConv2d(2, 3, 3, "p4", stride=2),
                          gcnn.GlobalAvgPool(), nn.Linear(3, 5))
    lifting = (2 * 4) * (1 * 1) * 9 * (5 * 5)
    group_conv = (3 * 4) * (2 * 4) * 9 * (2 * 2)   # 5x5 -> 2x2 with k=3, stride 2, no padding
    assert models.count_macs(model, (1, 5, 5)) == lifting + group_conv + 3 * 5


@pytest.mark.parametrize("group", gcnn.GROUP_NAMES)
def test_count_macs_of_allcnnc_matches_its_layer_table(group):
    order = gcnn.get_group(group).order
    c1, c2 = allcnnc.WIDTHS[group]
    # (C_in, G_in, C_out, kernel, output side) of the nine layers at 32x32
    layers = [(3, 1, c1, 3, 32), (c1, order, c1, 3, 32), (c1, order, c1, 3, 16),
              (c1, order, c2, 3, 16), (c2, order, c2, 3, 16), (c2, order, c2, 3, 8),
              (c2, order, c2, 3, 8), (c2, order, c2, 1, 8), (c2, order, 10, 1, 8)]
    expected = sum(c_out * order * c_in * g_in * k * k * side * side for c_in, g_in, c_out, k, side in layers)
    assert models.count_macs(full_model("allcnnc", group)) == expected


def test_count_macs_restores_training_mode_and_running_stats():
    model = models.build_model("resnet44", "p4", width=0.25).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    models.count_macs(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------- forward / backward
@pytest.mark.parametrize("arch,group", PAIRS)
def test_forward_backward_on_a_cifar_batch(arch, group):
    torch.manual_seed(0)
    model = models.build_model(arch, group).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_one_channel_input_and_hundred_classes(arch):
    model = models.build_model(arch, "p4m", num_classes=100, in_channels=1, width=0.25).eval()
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 100)


@pytest.mark.parametrize("group", gcnn.GROUP_NAMES)
def test_rotmnist_on_16x16_digits(group):
    model = models.build_model("rotmnist", group, in_channels=1)
    logits = model(torch.randn(4, 1, 16, 16))
    assert logits.shape == (4, 10)
    logits.sum().backward()


# ----------------------------------------------------------------- invariance
@pytest.mark.parametrize("arch", CIFAR_ARCHS)
@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_cifar_gcnns_are_exactly_invariant_on_odd_inputs(arch, group, rng, check_equivariant):
    """33 -> 17 -> 9: every stride-2 layer samples symmetrically about the centre."""
    model = float64_eval_model(arch, group, rng, width=0.125)
    x = torch.randn(2, 3, 33, 33, generator=rng, dtype=torch.float64)
    check_equivariant(model, x, gcnn.get_group(group), invariant=True)
    assert models.invariance_error(model, x) < INVARIANCE_TOL


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_rotmnist_is_exactly_invariant_on_16x16(group, rng, check_equivariant):
    model = float64_eval_model("rotmnist", group, rng, width=1.0, in_channels=1)
    x = torch.randn(2, 1, 16, 16, generator=rng, dtype=torch.float64)
    check_equivariant(model, x, gcnn.get_group(group), invariant=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_z2_network_is_not_invariant(arch, rng, equivariance_error_of):
    """Negative control: the same check fails for a plain CNN."""
    model = float64_eval_model(arch, "z2", rng, width=0.25)
    x = torch.randn(2, 3, 33 if arch in CIFAR_ARCHS else 16, 33 if arch in CIFAR_ARCHS else 16,
                    generator=rng, dtype=torch.float64)
    assert equivariance_error_of(model, x, gcnn.get_group("p4m"), invariant=True) > 1e-3
    assert models.invariance_error(model, x, "p4m") > 1e-3


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_stride_two_on_32x32_breaks_exact_invariance(arch, rng):
    """Even sizes put the strided grid off the rotation centre: measurably non-zero."""
    model = float64_eval_model(arch, "p4m", rng, width=0.125)
    error = models.invariance_error(model, torch.randn(2, 3, 32, 32, generator=rng, dtype=torch.float64))
    assert error > 1e-6


def test_invariance_error_of_a_hand_computed_module():
    """f = top-left pixel of [[1, 2], [3, 4]]: rotations give 2, 4, 3, so max |f(gx) - f(x)| / |f(x)| = 3."""
    top_left = lambda x: x[:, 0, 0, :1]  # noqa: E731
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert models.invariance_error(top_left, x, "p4") == 3.0
    assert models.invariance_error(lambda x: x.mean(dim=(1, 2, 3))[:, None], x, "p4m") == 0.0
    # per-image maxima averaged over images, whatever the chunking: (3 + 2/2) / 2
    pair = torch.cat([x, x.flip(-1)])  # second image [[2, 1], [4, 3]]: f = 2, rotations give 1, 3, 4 -> max 2/2
    assert models.invariance_error(top_left, pair, "p4") == pytest.approx((3.0 + 1.0) / 2)
    assert models.invariance_error(top_left, pair, "p4", batch_size=1) == pytest.approx((3.0 + 1.0) / 2)


# ----------------------------------------------------------------- results table and script
def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and cells[0] in ARCHS:
            rows[(cells[0], cells[1])] = cells
    return rows


def test_committed_table_matches_recomputed_params_and_macs():
    committed = table_rows((ROOT / "results" / "models.md").read_text())
    assert set(committed) == set(PAIRS)
    for (arch, group), cells in committed.items():
        model = full_model(arch, group)
        shape = models.default_input_shape(arch)
        assert cells[2] == "x".join(map(str, shape))
        assert cells[3] == f"{models.count_parameters(model):,}"
        reference = models.reference_params(arch, group)
        assert cells[4] == ("n/a" if reference is None else f"{reference:,}")
        assert cells[6] == f"{models.count_macs(model, shape) / 1e6:,.1f}M"
        if group == "z2":
            continue
        at_input_size, at_odd_size = float(cells[8]), float(cells[9])
        if arch == "rotmnist":  # 2x2 pooling: exact on 16x16, not on 33x33
            assert at_input_size < INVARIANCE_TOL < at_odd_size
        else:                   # stride 2: exact on 33x33, not on 32x32
            assert at_odd_size < INVARIANCE_TOL < at_input_size


def test_script_prints_and_writes_the_same_report(tmp_path):
    out = tmp_path / "models.md"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "models.py"), "--archs", "rotmnist",
                             "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.stdout == out.read_text()
    assert set(table_rows(result.stdout)) == {("rotmnist", g) for g in gcnn.GROUP_NAMES}
    assert re.search(r"\| rotmnist \| p4 \| 1x16x16 \| [\d,]+ \| n/a \| n/a \|", result.stdout)


def test_count_macs_gives_every_submodule_back_its_own_mode():
    model = models.build_model("rotmnist", "p4", width=0.5, in_channels=1)
    frozen = next(m for m in model.modules() if isinstance(m, gcnn.GroupBatchNorm2d))
    frozen.eval()  # a deliberately frozen part of a training model
    models.count_macs(model, (1, 16, 16))
    assert model.training and not frozen.training
