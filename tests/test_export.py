"""Export to plain nn.Conv2d: the same function, traceable, no group machinery left."""
import torch
from torch import nn

import pytest

import gcnn


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_export_is_exact_and_traceable(group, rng, full_stack):
    net = full_stack(group)
    x = torch.randn(4, 3, 9, 9, generator=rng, dtype=torch.float64)
    net(x)  # running statistics
    net.eval()
    plain = gcnn.to_plain_conv(net)
    assert not any(isinstance(m, (gcnn.LiftingConv2d, gcnn.GroupConv2d)) for m in plain.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in plain.modules()) == 3
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(plain(x), expected)
        traced = torch.jit.trace(plain, x)
        assert torch.allclose(traced(x), expected, rtol=0, atol=1e-12)


def test_export_leaves_the_original_untouched():
    layer = gcnn.GroupConv2d(2, 3, 3, group="p4", padding=1)
    plain = gcnn.to_plain_conv(layer)
    assert isinstance(plain, gcnn.PlainGroupConv2d) and isinstance(layer, gcnn.GroupConv2d)
    assert layer.training
