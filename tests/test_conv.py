"""Lifting and group convolutions: exact equivariance, the eval cache, init, bad input."""
import copy
import pickle

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gcnn


def image(rng, c=3, size=9, batch=2):
    return torch.randn(batch, c, size, size, generator=rng, dtype=torch.float64)


def features(rng, group, c=3, size=9, batch=2):
    return torch.randn(batch, c, group.order, size, size, generator=rng, dtype=torch.float64)


# (kernel_size, stride, padding, size): stride 1 keeps every grid symmetric about the centre; stride s
# only where s divides size + 2 * padding - kernel_size. Even kernels: any size at stride 1, with or
# without (symmetric) padding; at stride 2 on sizes of the kernel's parity (+ 2 * padding).
CASES = [
    (1, 1, 0, 7), (3, 1, 1, 7), (5, 1, 2, 7), (3, 1, 0, 8),
    (1, 2, 0, 9), (3, 2, 1, 9), (5, 2, 2, 9),
    (2, 1, 0, 7), (2, 1, 0, 8), (2, 1, 1, 7), (4, 1, 0, 9), (4, 1, 0, 4), (4, 1, 2, 8),
    (2, 2, 0, 8), (2, 2, 1, 10), (4, 2, 0, 10), (4, 2, 1, 8),
]
# The same layers where the strided grid is off the centre (size + 2 * padding - kernel_size odd).
ASYMMETRIC_CASES = [(2, 2, 0, 9), (4, 2, 0, 9), (4, 2, 1, 7), (3, 2, 1, 8)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel_size,stride,padding,size", CASES)
def test_lifting_conv_is_equivariant(group, rng, check_equivariant, kernel_size, stride, padding, size, bias):
    layer = gcnn.LiftingConv2d(3, 4, kernel_size, group=group, stride=stride, padding=padding, bias=bias)
    nn.init.normal_(layer.bias) if bias else None
    check_equivariant(layer.double(), image(rng, size=size), group)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel_size,stride,padding,size", CASES)
def test_group_conv_is_equivariant(group, rng, check_equivariant, kernel_size, stride, padding, size, bias):
    layer = gcnn.GroupConv2d(3, 4, kernel_size, group=group, stride=stride, padding=padding, bias=bias)
    nn.init.normal_(layer.bias) if bias else None
    check_equivariant(layer.double(), features(rng, group, size=size), group)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["p4", "p4m"]), c_in=st.integers(1, 4), c_out=st.integers(1, 4),
       kernel_size=st.sampled_from([1, 2, 3, 4, 5]), size=st.integers(5, 11), batch=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_random_shapes_are_equivariant(equivariance_error_of, name, c_in, c_out, kernel_size, size, batch, seed):
    """Stride 1 with symmetric padding: exact for every kernel side (odd or even) and map size."""
    group = gcnn.get_group(name)
    torch.manual_seed(seed)
    stack = nn.Sequential(
        gcnn.LiftingConv2d(c_in, c_out, kernel_size, group=group, padding=kernel_size // 2),
        gcnn.GroupConv2d(c_out, c_in, kernel_size, group=group, padding=kernel_size // 2),
    ).double()
    x = torch.randn(batch, c_in, size, size, dtype=torch.float64)
    assert equivariance_error_of(stack, x, group) < 1e-10


def test_negative_control_plain_conv_is_not_equivariant(rng, equivariance_error_of):
    """The check discriminates: an ordinary CNN fails it for p4."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).double()
    assert equivariance_error_of(plain, image(rng), gcnn.get_group("p4")) > 0.1


@pytest.mark.parametrize("layer_cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
@pytest.mark.parametrize("kernel_size,stride,padding,size", ASYMMETRIC_CASES)
def test_negative_control_strided_grid_off_the_centre_is_not_equivariant(
        rng, equivariance_error_of, layer_cls, kernel_size, stride, padding, size):
    """The layers of CASES on sizes where the strided grid is not symmetric fail the check."""
    group = gcnn.get_group("p4")
    layer = layer_cls(3, 4, kernel_size, group=group, stride=stride, padding=padding).double()
    x = image(rng, size=size) if layer_cls is gcnn.LiftingConv2d else features(rng, group, size=size)
    assert equivariance_error_of(layer, x, group) > 0.01


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_negative_control_broken_expansion_is_not_equivariant(rng, equivariance_error_of, name, kernel_size):
    """The same layer with its expansion broken (every element uses the
    un-rotated filter) fails the check that the real layer passes."""
    group = gcnn.get_group(name)
    layer = gcnn.GroupConv2d(3, 4, kernel_size, group=group, padding=kernel_size // 2).double()
    x = features(rng, group)
    assert equivariance_error_of(layer, x, group) < 1e-10
    broken = layer.expansion_index.view(group.order, -1)[:1].expand(group.order, -1).reshape(-1)
    layer.expansion_index = broken.clone()
    assert equivariance_error_of(layer, x, group) > 0.1


def test_z2_layers_are_plain_convolutions(rng):
    layer = gcnn.LiftingConv2d(3, 4, 3, group="z2", padding=1).double()
    x = image(rng)
    y = layer(x)
    assert y.shape == (2, 4, 1, 9, 9)
    ref = nn.functional.conv2d(x, layer.weight[:, :, 0], layer.bias, padding=1)
    assert torch.equal(y[:, :, 0], ref)


def test_output_shapes_of_the_readme_example():
    lift = gcnn.LiftingConv2d(3, 16, kernel_size=3, group="p4m", stride=1, padding=1, bias=True)
    conv = gcnn.GroupConv2d(16, 16, kernel_size=3, group="p4m", stride=1, padding=1, bias=True)
    h = conv(gcnn.GroupBatchNorm2d(16, group="p4m")(lift(torch.randn(8, 3, 32, 32))))
    assert h.shape == (8, 16, 8, 32, 32)
    assert gcnn.GroupPool(group="p4m", mode="max")(h).shape == (8, 16, 32, 32)


# --------------------------------------------------------------------- init
@pytest.mark.parametrize("layer_cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
def test_he_init_uses_the_true_fan_in(group, layer_cls):
    torch.manual_seed(0)
    layer = layer_cls(16, 64, 3, group=group)
    g_in = 1 if layer_cls is gcnn.LiftingConv2d else group.order
    assert layer.fan_in == 16 * g_in * 9
    std = layer.weight.std().item()
    assert abs(std / (2 / layer.fan_in) ** 0.5 - 1) < 0.05
    assert torch.all(layer.bias == 0)


# ------------------------------------------------------------ device, dtype
@pytest.mark.parametrize("layer_cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
def test_device_and_dtype_reach_the_parameters_and_the_index(group, layer_cls):
    layer = layer_cls(2, 3, 3, group, device="meta", dtype=torch.float64)
    assert all(p.is_meta and p.dtype == torch.float64 for p in layer.parameters())
    assert layer.expansion_index.is_meta and layer.expansion_index.dtype == torch.long
    assert layer_cls(2, 3, 3, group, dtype=torch.float64)(
        torch.zeros(1, 2, *(() if layer.lifting else (group.order,)), 5, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layer_cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
def test_a_meta_layer_materialises_like_a_cpu_built_one(group, layer_cls, bias, check_meta_build, rng):
    """Weights, bias and the (non-persistent) expansion index are all rebuilt by reset_parameters."""
    layer = check_meta_build(lambda: layer_cls(2, 3, 4, group, bias=bias, dtype=torch.float64))
    x = image(rng, c=2, size=6) if layer.lifting else features(rng, group, c=2, size=6)
    torch.manual_seed(0)
    assert torch.equal(layer(x), layer_cls(2, 3, 4, group, bias=bias, dtype=torch.float64)(x))


# --------------------------------------------------------------- eval cache
def fresh_output(layer, x):
    weight, bias = layer.expanded_weight()
    y = nn.functional.conv2d(x.flatten(1, 2), weight, bias, padding=layer.padding)
    return y.view(y.shape[0], layer.out_channels, layer.group.order, *y.shape[-2:])


@pytest.fixture
def p4m_layer_and_input(rng):
    group = gcnn.get_group("p4m")
    return gcnn.GroupConv2d(3, 4, 3, group=group, padding=1).double(), features(rng, group)


def test_eval_cache_matches_training_expansion(p4m_layer_and_input):
    layer, x = p4m_layer_and_input
    y_train = layer(x)
    layer.eval()
    with torch.no_grad():
        first, second = layer(x), layer(x)
    assert layer._cache is not None
    assert torch.equal(first, y_train.detach()) and torch.equal(second, first)
    layer.train()
    assert layer._cache is None


def test_eval_cache_is_invalidated_by_an_optimizer_step(p4m_layer_and_input):
    layer, x = p4m_layer_and_input
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer.eval()
    with torch.no_grad():
        before = layer(x)
    layer(x).square().mean().backward()  # grads enabled: never served from the cache
    opt.step()
    with torch.no_grad():
        after = layer(x)
    assert not torch.allclose(after, before)
    assert torch.equal(after, fresh_output(layer, x))


def load_other_weights(layer):
    other = copy.deepcopy(layer)
    other.reset_parameters()
    layer.load_state_dict(other.state_dict())


def edit_data_then_clear_cache(layer):
    """``.data`` has its own version counter, so the cache cannot see such edits;
    ``clear_cache`` (or ``eval()`` again) is the documented way back."""
    layer.weight.data.mul_(2)
    layer.clear_cache()


@pytest.mark.parametrize("change", [load_other_weights, lambda layer: layer.weight.mul_(2),
                                    edit_data_then_clear_cache],
                         ids=["load_state_dict", "in_place_edit", "data_edit_and_clear_cache"])
def test_eval_cache_is_invalidated_when_weights_change(p4m_layer_and_input, change):
    layer, x = p4m_layer_and_input
    layer.eval()
    with torch.no_grad():
        before = layer(x)
        change(layer)
        after = layer(x)
    assert not torch.allclose(after, before)
    assert torch.equal(after, fresh_output(layer, x))


def test_copies_and_pickles_carry_no_cached_bank(p4m_layer_and_input):
    layer, x = p4m_layer_and_input
    layer.eval()
    with torch.no_grad():
        layer(x)
    assert layer._cache is not None
    assert copy.deepcopy(layer)._cache is None
    assert pickle.loads(pickle.dumps(layer))._cache is None
    assert layer._cache is not None  # the original keeps its bank


def test_eval_mode_still_gives_weight_gradients(p4m_layer_and_input):
    layer, x = p4m_layer_and_input
    layer.eval()
    with torch.no_grad():
        layer(x)  # fill the cache
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_state_dict_has_the_same_keys_in_train_and_eval(p4m_layer_and_input):
    layer, x = p4m_layer_and_input
    train_keys = set(layer.state_dict())
    layer.eval()
    with torch.no_grad():
        layer(x)
    assert set(layer.state_dict()) == train_keys == {"weight", "bias"}


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kernel_size", [0, -2, (3, 5), (2, 4), (3, 3, 3), 3.0, True])
def test_bad_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=r"^kernel_size=.* is not valid; expected an int k >= 1 or \(k, k\).*square"):
        gcnn.GroupConv2d(2, 2, kernel_size, group="p4")


@pytest.mark.parametrize("kernel_size", [2, (2, 2), 4, [4, 4], 3])
def test_odd_and_even_square_kernels_are_accepted(kernel_size):
    layer = gcnn.GroupConv2d(2, 3, kernel_size, group="p4")
    k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    assert layer.weight.shape == (3, 2, 4, k, k)
    assert layer(torch.zeros(1, 2, 4, 8, 8)).shape == (1, 3, 4, 9 - k, 9 - k)


@pytest.mark.parametrize("kwargs,match", [
    ({"stride": 0}, "stride=0 is not valid; expected an integer >= 1"),
    ({"padding": -1}, "padding=-1 is not valid; expected an integer >= 0"),
    ({"in_channels": 0}, "in_channels=0 is not valid; expected an integer >= 1"),
    ({"group": "c4"}, "unknown group 'c4'"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gcnn.LiftingConv2d(**{"in_channels": 3, "out_channels": 4, "kernel_size": 3, "group": "p4", **kwargs})


def test_group_conv_rejects_4d_input():
    with pytest.raises(ValueError, match=r"\(B, 2, 4, H, W\).*got shape \(1, 2, 5, 5\)"):
        gcnn.GroupConv2d(2, 2, 3, group="p4")(torch.zeros(1, 2, 5, 5))


def test_group_conv_rejects_wrong_group_order():
    with pytest.raises(ValueError, match=r"\(B, 2, 8, H, W\).*'p4m'.*got shape \(1, 2, 4, 5, 5\)"):
        gcnn.GroupConv2d(2, 2, 3, group="p4m")(torch.zeros(1, 2, 4, 5, 5))


def test_group_conv_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\(B, 2, 4, H, W\).*got shape \(1, 3, 4, 5, 5\)"):
        gcnn.GroupConv2d(2, 2, 3, group="p4")(torch.zeros(1, 3, 4, 5, 5))


def test_lifting_conv_rejects_feature_maps_and_wrong_channels():
    lift = gcnn.LiftingConv2d(3, 2, 3, group="p4")
    for shape in [(1, 3, 4, 5, 5), (1, 1, 5, 5)]:
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*got shape"):
            lift(torch.zeros(shape))
