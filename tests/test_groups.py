"""Group axioms and the group's actions on the plane and on the group axis."""
import itertools

import pytest
import torch

import gcnn

ORDERS = {"z2": 1, "p4": 4, "p4m": 8}


def test_order(group):
    assert group.order == ORDERS[group.name] == len(set(group.elements))


def test_closure_and_identity(group):
    n = group.order
    table = group.cayley
    assert table.shape == (n, n) and table.min() >= 0 and table.max() < n
    # every row and column is a permutation (Latin square)
    for row in list(table) + list(table.T):
        assert sorted(row.tolist()) == list(range(n))
    assert torch.equal(table[0], torch.arange(n)) and torch.equal(table[:, 0], torch.arange(n))


def test_associativity(group):
    t = group.cayley
    for a, b, c in itertools.product(range(group.order), repeat=3):
        assert t[t[a, b], c] == t[a, t[b, c]]


def test_inverses(group):
    idx = torch.arange(group.order)
    assert torch.all(group.cayley[idx, group.inverse] == 0)
    assert torch.all(group.cayley[group.inverse, idx] == 0)


def test_p4m_is_not_abelian_and_p4_is():
    for name, abelian in (("p4", True), ("p4m", False)):
        t = gcnn.get_group(name).cayley
        assert torch.equal(t, t.T) == abelian


def test_matrices_are_a_faithful_representation(group):
    mats = group.matrices
    assert len({tuple(m.flatten().tolist()) for m in mats}) == group.order
    for a, b in itertools.product(range(group.order), repeat=2):
        assert torch.equal(mats[group.cayley[a, b]], mats[a] @ mats[b])


def test_image_action_is_a_homomorphism(group, rng):
    x = torch.randn(2, 3, 7, 7, generator=rng, dtype=torch.float64)
    for a, b in itertools.product(range(group.order), repeat=2):
        lhs = group.transform_image(group.transform_image(x, b), a)
        assert torch.equal(lhs, group.transform_image(x, group.cayley[a, b].item()))


def test_image_action_matches_matrices(group, rng):
    """[g f](x) = f(M_g^-1 x) pixel by pixel, in centred (row, col) coordinates."""
    n, c = 5, 2
    f = torch.randn(n, n, generator=rng)
    for g in range(group.order):
        gf = group.transform_image(f, g)
        inv = group.matrices[group.inverse[g]]
        for i, j in itertools.product(range(n), repeat=2):
            si, sj = (inv @ torch.tensor([i - c, j - c])).tolist()
            assert gf[i, j] == f[si + c, sj + c]


def test_feature_action_is_a_homomorphism(group, rng):
    x = torch.randn(2, 3, group.order, 5, 5, generator=rng, dtype=torch.float64)
    for a, b in itertools.product(range(group.order), repeat=2):
        lhs = group.transform_features(group.transform_features(x, b), a)
        assert torch.equal(lhs, group.transform_features(x, group.cayley[a, b].item()))


def test_p4_is_the_rotation_subgroup_of_p4m():
    p4, p4m = gcnn.get_group("p4"), gcnn.get_group("p4m")
    assert p4m.elements[:4] == p4.elements
    assert torch.equal(p4m.cayley[:4, :4], p4.cayley)


@pytest.mark.parametrize("bad", ["p5", "P4", "", None, 4])
def test_unknown_group_names_the_choices(bad):
    with pytest.raises(ValueError, match=r"unknown group .*z2.*p4.*p4m"):
        gcnn.get_group(bad)


def test_transform_features_rejects_wrong_group_order():
    with pytest.raises(ValueError, match=r"\(B, C, 8, H, W\).*got shape \(1, 2, 4, 3, 3\)"):
        gcnn.get_group("p4m").transform_features(torch.zeros(1, 2, 4, 3, 3), 1)
