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
ARCHS = ("allcnnc", "resnet44", "resnet26", "rotmnist", "rotmnist_cnn", "rotmnist_cnn_rp")
CIFAR_ARCHS = ("allcnnc", "resnet44", "resnet26")
TABLE1_ARCHS = ("rotmnist_cnn", "rotmnist_cnn_rp")
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
def full_model(arch: str, group: str, head: str = "invariant") -> nn.Module:
    """Full-size model with the input channels its table row uses (built once per session)."""
    torch.manual_seed(0)
    options = {} if head == "invariant" else {"head": head}
    return models.build_model(arch, group, in_channels=models.default_input_shape(arch)[0], **options)


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
    with pytest.raises(ValueError, match="arch='vgg16' is not valid; expected one of") as info:
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
    ({"width": 0}, "width=0 is not valid; expected a number > 0"),
    ({"width": -1.0}, "width=-1.0 is not valid"),
    ({"width": float("nan")}, "width=nan is not valid"),
    ({"width": True}, "width=True is not valid"),
    ({"num_classes": 0}, "num_classes=0 is not valid; expected an integer >= 1"),
    ({"in_channels": 2.0}, "in_channels=2.0 is not valid; expected an integer >= 1"),
    ({"widths": (8, 16, 32)}, r"widths=\(8, 16, 32\) is not valid; expected 2 integers >= 1 for allcnnc"),
    ({"widths": (8, 0)}, r"widths=\(8, 0\) is not valid; expected 2 integers >= 1 for allcnnc"),
    ({"depth": 20}, r"allcnnc override='depth' is not valid; expected one of "
                    r"\['widths', 'input_dropout', 'dropout'\]"),
    ({"head": "reference"}, "allcnnc override='head' is not valid"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_model("allcnnc", "p4", **kwargs)


def test_resnet_rejects_allcnnc_options():
    with pytest.raises(ValueError, match=r"resnet44 override='dropout' is not valid; expected one of "
                                         r"\['widths', 'head'\]"):
        models.build_model("resnet44", "z2", dropout=0.1)


def test_resnet_rejects_an_unknown_head():
    with pytest.raises(ValueError, match=r"head='paper' is not valid; expected one of \['invariant', 'reference'\]"):
        models.build_model("resnet26", "p4m", head="paper")


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


def test_paper_names_map_the_registry_to_table_1():
    names = {(a, g): models.paper_name(a, g) for a, g in PAIRS if models.paper_name(a, g)}
    assert names == {("rotmnist_cnn", "z2"): "Z2CNN", ("rotmnist_cnn", "p4"): "P4CNN",
                     ("rotmnist_cnn", "p4m"): "P4MCNN", ("rotmnist_cnn_rp", "p4"): "P4CNN-RP"}


def dropout_rates(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.parametrize("arch,group,rates", [
    ("rotmnist_cnn", "z2", [0.3] * 5), ("rotmnist_cnn", "p4", []), ("rotmnist_cnn", "p4m", []),
    *(("rotmnist_cnn_rp", group, []) for group in gcnn.GROUP_NAMES), ("rotmnist", "z2", []),
])
def test_rotmnist_dropout_per_group_is_the_reference_codes(arch, group, rates):
    """Z2CNN: dropout 0.3 after layers 1, 3, 4, 5 and 6; P4CNN and P4CNN-RP: none."""
    model = full_model(arch, group)
    assert dropout_rates(model) == rates
    if rates:
        after = [type(model.layers[i - 1]).__name__ for i, m in enumerate(model.layers) if isinstance(m, nn.Dropout)]
        assert after == ["ConvBNReLU"] * 5 and isinstance(model.layers[1], nn.Dropout)


def test_rotmnist_cnn_dropout_override_wins_over_the_group_default():
    assert dropout_rates(models.build_model("rotmnist_cnn", "p4", dropout=0.1)) == [0.1] * 5
    assert dropout_rates(models.build_model("rotmnist_cnn", "z2", dropout=0.0)) == []
    with pytest.raises(ValueError, match=r"^dropout=1.0 is not valid; expected a number >= 0 and < 1$"):
        models.build_model("rotmnist_cnn_rp", "p4", dropout=1.0)
    with pytest.raises(ValueError, match=r"rotmnist override='dropout' is not valid; expected one of \['widths'\]"):
        models.build_model("rotmnist", "p4", dropout=0.1)


@pytest.mark.parametrize("arch", TABLE1_ARCHS)
def test_table1_maps_shrink_to_a_4x4_map_under_the_4x4_last_layer(arch):
    """28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> 6 -> 4 -> 1, no padding."""
    model = full_model(arch, "p4")
    sides = []
    convs = [m for m in model.modules() if isinstance(m, (gcnn.LiftingConv2d, gcnn.GroupConv2d))]
    handles = [c.register_forward_hook(lambda m, i, o: sides.append((i[0].shape[-1], m.kernel_size, o.shape[-1])))
               for c in convs]
    with models.evaluating(model):
        model(torch.zeros(1, 1, 28, 28))
    for handle in handles:
        handle.remove()
    assert sides == [(28, 3, 26), (26, 3, 24), (12, 3, 10), (10, 3, 8), (8, 3, 6), (6, 3, 4), (4, 4, 1)]
    assert all(c.padding == 0 for c in convs)


# ----------------------------------------------------------------- parameter counts
def paper_network(arch: str, group: str) -> nn.Module:
    """The network the paper counts: the ResNets with the reference head."""
    return full_model(arch, group, "reference" if arch.startswith("resnet") else "invariant")


@pytest.mark.parametrize("arch,group", [(a, g) for a, g in PAIRS if models.reference_params(a, g)])
def test_paper_networks_have_exactly_the_papers_parameter_count(arch, group):
    """With the reference head every reported count matches exactly (ResNet44 p4m
    2,622,878 and ResNet26 p4m 7,173,110 included)."""
    assert models.count_parameters(paper_network(arch, group)) == models.reference_params(arch, group)


@pytest.mark.parametrize("arch", ["resnet44", "resnet26"])
@pytest.mark.parametrize("group", gcnn.GROUP_NAMES)
def test_invariant_head_has_c3_times_g_minus_one_times_classes_fewer_parameters(arch, group):
    """The invariant head classifies the group average (C3 features), the reference
    head every group channel (C3 * G): for z2 they are the same network."""
    invariant, reference = full_model(arch, group), full_model(arch, group, "reference")
    c3, order = invariant.classifier.in_features, invariant.group.order
    assert reference.classifier.in_features == c3 * order
    difference = models.count_parameters(reference) - models.count_parameters(invariant)
    assert difference == c3 * (order - 1) * 10



def test_table1_reference_counts_are_the_papers():
    """Table 1 (reference code: weights, biases, BN scale and shift)."""
    assert [models.reference_params(a, g) for a, g in [("rotmnist_cnn", "z2"), ("rotmnist_cnn", "p4"),
                                                       ("rotmnist_cnn_rp", "p4")]] == [21_750, 24_680, 21_750]
    assert models.reference_params("rotmnist_cnn", "p4m") is None  # beyond the paper


@pytest.mark.parametrize("arch", TABLE1_ARCHS)
def test_rotmnist_cnn_parameter_count_layer_by_layer(arch, group):
    """Lifting 3x3, five 3x3 G-convs and a 4x4 G-conv, each with one bias per G-channel, and six BN
    (scale, shift) pairs; rotation pooling makes every conv a lifting conv (G_in = 1). p4m: 26,799."""
    (c,) = models.get_spec(arch).widths[group.name]
    g_in = 1 if arch == "rotmnist_cnn_rp" else group.order
    expected = (c * 9 + c) + 5 * (c * c * g_in * 9 + c) + 6 * 2 * c + (10 * c * g_in * 16 + 10)
    assert models.count_parameters(full_model(arch, group.name)) == expected
    if (arch, group.name) == ("rotmnist_cnn", "p4m"):
        assert expected == 26_799


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
    size = models.default_input_shape(arch)[1]
    assert model(torch.randn(2, 1, size, size)).shape == (2, 100)


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


@pytest.mark.parametrize("arch", TABLE1_ARCHS)
@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_table1_gcnns_are_exactly_invariant_on_28x28(arch, group, rng, check_equivariant, equivariance_error_of):
    """Every element, float64, eval mode with random BN statistics; the 4x4 last layer included.
    Negative control: on 29x29 the 2x2 pool drops the last row and column of a 25x25 map, off the centre."""
    model = float64_eval_model(arch, group, rng, width=1.0, in_channels=1)
    check_equivariant(model, torch.randn(2, 1, 28, 28, generator=rng, dtype=torch.float64), model.group,
                      invariant=True)
    x = torch.randn(2, 1, 29, 29, generator=rng, dtype=torch.float64)
    assert equivariance_error_of(model, x, model.group, invariant=True) > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_z2_network_is_not_invariant(arch, rng, equivariance_error_of):
    """Negative control: the same check fails for a plain CNN."""
    model = float64_eval_model(arch, "z2", rng, width=0.25)
    size = 33 if arch in CIFAR_ARCHS else models.default_input_shape(arch)[1]
    x = torch.randn(2, 3, size, size, generator=rng, dtype=torch.float64)
    assert equivariance_error_of(model, x, gcnn.get_group("p4m"), invariant=True) > 1e-3
    assert models.invariance_error(model, x, "p4m") > 1e-3


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_reference_head_features_are_equivariant_but_its_logits_are_not_invariant(group, rng, check_equivariant):
    """The reference head's C3 * G features permute exactly with the group; the
    classifier on all of them sees the orientation (negative control for invariance)."""
    model = models.build_model("resnet44", group, width=0.125, head="reference").double().eval()
    randomize_batchnorm(model, rng)
    c3, order = model.blocks[-1].conv2.out_channels, model.group.order
    features = lambda x: model.head(model.blocks(model.stem(x))).view(len(x), c3, order, 1, 1)  # noqa: E731
    x = torch.randn(2, 3, 33, 33, generator=rng, dtype=torch.float64)
    check_equivariant(features, x, model.group)
    assert models.invariance_error(model, x) > 1e-3


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
    # per-image maxima averaged over images: (3 + 2/2) / 2
    pair = torch.cat([x, x.flip(-1)])  # second image [[2, 1], [4, 3]]: f = 2, rotations give 1, 3, 4 -> max 2/2
    assert models.invariance_error(top_left, pair, "p4") == pytest.approx((3.0 + 1.0) / 2)


# ----------------------------------------------------------------- meta device
@pytest.mark.parametrize("arch,group", PAIRS)
def test_a_model_built_on_the_meta_device_materialises_like_a_cpu_built_one(arch, group, check_meta_build):
    """Under ``torch.device("meta")`` nothing is allocated; ``to_empty`` then ``reset_parameters()``
    (seed 0) gives the same parameter and buffer names, shapes and values as a CPU build (seed 0)."""
    in_channels = models.default_input_shape(arch)[0]
    check_meta_build(lambda: models.build_model(arch, group, in_channels=in_channels))


# ----------------------------------------------------------------- results table and script
def table_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    """``(arch, group, head) -> [input, params, paper params, diff, MACs, inv. group, inv. errors...]``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[0] in ARCHS:
            rows[tuple(cells[:3])] = cells[3:]
    return rows


TABLED = [(a, g, "invariant") for a, g in PAIRS] + [(a, "p4m", "reference") for a in ("resnet44", "resnet26")]


def test_committed_table_matches_recomputed_params_and_macs():
    committed = table_rows((ROOT / "results" / "models.md").read_text())
    assert sorted(committed) == sorted(TABLED)
    for (arch, group, head), cells in committed.items():
        model = full_model(arch, group, head)
        shape = models.default_input_shape(arch)
        assert cells[0] == "x".join(map(str, shape))
        params, reference = models.count_parameters(model), models.reference_params(arch, group)
        assert cells[1] == f"{params:,}"
        assert cells[2] == ("n/a" if reference is None else f"{reference:,}")
        assert cells[3] == ("n/a" if reference is None else f"{100 * (params - reference) / reference:+.2f}%")
        assert cells[4] == f"{models.count_macs(model, shape) / 1e6:,.1f}M"
        at_input_size, at_odd_size = float(cells[6]), float(cells[7])
        if group == "z2" or head == "reference":  # not invariant at any size
            assert min(at_input_size, at_odd_size) > 1e-3
        elif arch.startswith("rotmnist"):  # 2x2 pooling: exact on 16x16 and 28x28, not on 33x33
            assert at_input_size < INVARIANCE_TOL < at_odd_size
        else:                     # stride 2: exact on 33x33, not on 32x32
            assert at_odd_size < INVARIANCE_TOL < at_input_size


def test_script_prints_and_writes_the_same_report(tmp_path):
    out = tmp_path / "models.md"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "models_table.py"), "--archs", "rotmnist",
                             "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.stdout == out.read_text()
    assert set(table_rows(result.stdout)) == {("rotmnist", g, "invariant") for g in gcnn.GROUP_NAMES}
    assert re.search(r"\| rotmnist \| p4 \| invariant \| 1x16x16 \| [\d,]+ \| n/a \| n/a \|", result.stdout)


def test_count_macs_gives_every_submodule_back_its_own_mode():
    model = models.build_model("rotmnist", "p4", width=0.5, in_channels=1)
    frozen = next(m for m in model.modules() if isinstance(m, gcnn.GroupBatchNorm2d))
    frozen.eval()  # a deliberately frozen part of a training model
    models.count_macs(model, (1, 16, 16))
    assert model.training and not frozen.training
