"""Filter expansion against an independent slow reference built from torch.rot90/flip."""
import pytest
import torch

import gcnn


def slow_expand(weight: torch.Tensor, group: gcnn.Group, lifting: bool) -> torch.Tensor:
    """bank[(o, g), (i, h)] = F^m R^r w[o, i, g^-1 h], written with plain loops."""
    c_out, c_in, g_in, k, _ = weight.shape
    bank = torch.empty(c_out, group.order, c_in, g_in, k, k, dtype=weight.dtype)
    for g, (m, r) in enumerate(group.elements):
        g_inv = group.inverse[g].item()
        for h in range(g_in):
            src = 0 if lifting else group.cayley[g_inv, h].item()
            filt = torch.rot90(weight[:, :, src], r, dims=(-2, -1))
            bank[:, g, :, h] = torch.flip(filt, dims=(-1,)) if m else filt
    return bank.reshape(c_out * group.order, c_in * g_in, k, k)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("layer_cls", [gcnn.LiftingConv2d, gcnn.GroupConv2d])
def test_expansion_matches_slow_reference(group, layer_cls, kernel_size):
    layer = layer_cls(3, 2, kernel_size, group=group).double()
    bank, bias = layer.expanded_weight()
    lifting = layer_cls is gcnn.LiftingConv2d
    assert torch.equal(bank, slow_expand(layer.weight.detach(), group, lifting))
    assert torch.equal(bias, layer.bias.detach().repeat_interleave(group.order))


def test_expansion_is_one_gather_with_a_precomputed_index(group):
    layer = gcnn.GroupConv2d(2, 3, 3, group=group)
    assert layer.expansion_index.dtype == torch.long
    assert layer.expansion_index.numel() == group.order * 2 * group.order * 9
    assert "expansion_index" not in layer.state_dict()


def test_expansion_gradient_flows_to_every_weight(group):
    layer = gcnn.GroupConv2d(2, 3, 3, group=group).double()
    bank, _ = layer.expanded_weight()
    bank.sum().backward()
    # every stored weight appears exactly `order` times in the bank
    assert torch.equal(layer.weight.grad, torch.full_like(layer.weight, group.order))
