"""GroupBatchNorm2d: shared statistics over the group axis, so it is equivariant."""
import pytest
import torch
from torch import nn

import gcnn


@pytest.fixture
def bn_and_input(group, rng):
    bn = gcnn.GroupBatchNorm2d(3, group=group).double()
    nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    x = 3 * torch.randn(4, 3, group.order, 7, 7, generator=rng, dtype=torch.float64) + 1
    return bn, x


def test_batch_norm_is_equivariant_in_train_mode(group, bn_and_input, check_equivariant):
    bn, x = bn_and_input
    check_equivariant(bn, x, group)


def test_batch_norm_is_equivariant_in_eval_mode(group, bn_and_input, check_equivariant):
    bn, x = bn_and_input
    for _ in range(3):
        bn(x)  # non-trivial running statistics
    bn.eval()
    check_equivariant(bn, x, group)


def test_one_statistic_per_channel_shared_over_the_group(group, bn_and_input):
    bn, x = bn_and_input
    bn.momentum = 1.0
    bn(x)
    assert bn.running_mean.shape == bn.weight.shape == (3,)
    assert torch.allclose(bn.running_mean, x.mean(dim=(0, 2, 3, 4)))


def test_negative_control_batchnorm2d_over_channels_times_group_is_not_equivariant(rng, equivariance_error_of):
    group = gcnn.get_group("p4m")
    bn2d = nn.BatchNorm2d(3 * group.order).double()
    x = torch.randn(4, 3, group.order, 7, 7, generator=rng, dtype=torch.float64)
    for _ in range(3):
        bn2d(x.flatten(1, 2))
    bn2d.eval()
    nn.init.normal_(bn2d.weight)
    def per_group_channel(t):
        return bn2d(t.flatten(1, 2)).view_as(t)
    assert equivariance_error_of(per_group_channel, x, group) > 0.01


def test_batch_norm_rejects_wrong_shapes():
    bn = gcnn.GroupBatchNorm2d(3, group="p4")
    for shape in [(2, 3, 5, 5), (2, 3, 8, 5, 5), (2, 4, 4, 5, 5)]:
        with pytest.raises(ValueError, match=r"\(B, 3, 4, H, W\).*got shape"):
            bn(torch.zeros(shape))


def test_device_and_dtype_reach_the_parameters_and_running_stats(group, check_meta_build):
    bn = gcnn.GroupBatchNorm2d(3, group, device="meta", dtype=torch.float64)
    assert all(t.is_meta for t in (*bn.parameters(), *bn.buffers()))
    assert bn.weight.dtype == bn.running_var.dtype == torch.float64
    check_meta_build(lambda: gcnn.GroupBatchNorm2d(3, group, dtype=torch.float64))
