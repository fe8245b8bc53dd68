"""Group pooling (invariance), spatial pooling and dropout on G-feature maps, and a full stack."""
import pytest
import torch
from torch import nn

import gcnn


def features(rng, group, size=9):
    return torch.randn(2, 3, group.order, size, size, generator=rng, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_group_pool_is_invariant_over_the_group_axis(group, rng, check_equivariant, mode):
    """pool(g f) = g_plane pool(f): the group axis is gone, only the plane moves."""
    pool = gcnn.GroupPool(group=group, mode=mode)
    x = features(rng, group)
    y = pool(x)
    assert y.shape == (2, 3, 9, 9)
    for g in range(group.order):
        assert torch.allclose(pool(group.transform_features(x, g)), group.transform_image(y, g), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_spatial_pool_is_equivariant_on_symmetric_grids(group, rng, check_equivariant, mode):
    pool = gcnn.SpatialPool2d(3, stride=2, padding=1, mode=mode)
    x = features(rng, group)
    assert pool(x).shape == (2, 3, group.order, 5, 5)
    check_equivariant(pool, x, group)


@pytest.mark.parametrize("pool,reduce", [(gcnn.GlobalAvgPool(), torch.mean), (gcnn.GlobalMaxPool(), torch.amax)])
def test_global_pools_reduce_plane_and_group_and_are_invariant(group, rng, check_equivariant, pool, reduce):
    x = features(rng, group, size=8)
    assert torch.equal(pool(x), reduce(x, dim=(2, 3, 4)))
    assert torch.equal(pool(x[:, :, 0]), reduce(x[:, :, 0], dim=(2, 3)))
    check_equivariant(pool, x, group, invariant=True)
    with pytest.raises(ValueError, match=rf"^{type(pool).__name__} expects .*got shape \(2, 3\)$"):
        pool(torch.zeros(2, 3))


def test_dropout_and_relu_work_elementwise_on_feature_maps(group, rng):
    x = features(rng, group)
    assert nn.Dropout(0.5)(x).shape == nn.ReLU()(x).shape == x.shape


def test_full_stack_is_invariant(group, rng, check_equivariant, full_stack):
    net = full_stack(group)
    x = torch.randn(4, 3, 9, 9, generator=rng, dtype=torch.float64)
    for _ in range(2):
        net(x)  # train-mode passes give the BN layers running statistics
    net.eval()
    check_equivariant(net, x, group, invariant=True)


def test_full_stack_in_train_mode_is_invariant_without_dropout(group, rng, check_equivariant, full_stack):
    net = full_stack(group)
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = torch.randn(4, 3, 9, 9, generator=rng, dtype=torch.float64)
    check_equivariant(net, x, group, invariant=True)


def test_bad_pooling_arguments():
    with pytest.raises(ValueError, match=r"mode='avg' is not valid; expected one of \['max', 'mean'\]"):
        gcnn.GroupPool(group="p4", mode="avg")
    with pytest.raises(ValueError, match=r"GroupPool expects .*\(B, C, 4, H, W\).*got shape \(2, 3, 5, 5\)"):
        gcnn.GroupPool(group="p4")(torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"got shape \(5, 5\)"):
        gcnn.SpatialPool2d(2)(torch.zeros(5, 5))


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 0}, "kernel_size=0 is not valid; expected an integer >= 1"),
    ({"kernel_size": 2, "stride": 0}, "stride=0 is not valid; expected an integer >= 1"),
    ({"kernel_size": 2, "padding": -1}, "padding=-1 is not valid; expected an integer >= 0"),
    ({"kernel_size": 2, "mode": "sum"}, r"mode='sum' is not valid; expected one of \['max', 'mean'\]"),
])
def test_bad_spatial_pool_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gcnn.SpatialPool2d(**kwargs)
