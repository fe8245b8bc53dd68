"""The plane groups Z2, p4 and p4m, restricted to the stabiliser of the origin.

Translations are handled by the convolution itself, so a group here is the
finite part that fixes the rotation centre of a feature map:

* ``z2``:  the trivial group {e}                         (order 1)
* ``p4``:  rotations by multiples of 90 degrees, C4     (order 4)
* ``p4m``: rotations and mirror reflections, D4         (order 8)

Convention (used everywhere in ``gcnn``)
----------------------------------------
An element is a pair ``(m, r)`` with ``m`` in {0, 1} and ``r`` in {0, 1, 2, 3};
it stands for ``F^m R^r``: first rotate by ``r`` quarter turns, then mirror
``m`` times. ``R`` is :func:`torch.rot90` with ``k=1`` on the last two axes
(counter-clockwise as an image is displayed) and ``F`` flips the last axis
(left-right). Elements are indexed ``i = 4 * m + r`` (``p4`` uses m = 0 only).

Because ``R F = F R^-1``, composition is
``(m1, r1)(m2, r2) = (m1 xor m2, (-1)^m2 * r1 + r2 mod 4)``.

On an image ``f`` (any tensor whose last two axes are H, W) element ``g`` acts
as ``[g f](x) = f(g^-1 x)``; on a G-feature map ``(B, C, G, H, W)`` it also
moves the group axis: ``[g f](x, h) = f(g^-1 x, g^-1 h)``.
"""
from __future__ import annotations

from functools import cached_property

import torch

__all__ = ["Group", "get_group", "GROUP_NAMES"]


class Group:
    """A finite subgroup of D4 acting on square images about their centre."""

    def __init__(self, name: str, rotations: int, mirrors: bool) -> None:
        self.name = name
        self.rotations = rotations
        self.mirrors = mirrors
        self.elements: tuple[tuple[int, int], ...] = tuple(
            (m, r) for m in range(2 if mirrors else 1) for r in range(rotations)
        )
        self.order = len(self.elements)

    def __repr__(self) -> str:
        return f"Group({self.name!r}, order={self.order})"

    def index(self, element: tuple[int, int]) -> int:
        """Index of the element ``(m, r)``."""
        return self.elements.index(element)

    # ------------------------------------------------------------- algebra
    def compose(self, a: int, b: int) -> int:
        """Index of the product ``a * b`` (apply ``b`` first, then ``a``)."""
        (m1, r1), (m2, r2) = self.elements[a], self.elements[b]
        r = ((-r1 if m2 else r1) + r2) % self.rotations
        return self.index((m1 ^ m2, r))

    @cached_property
    def cayley(self) -> torch.Tensor:
        """``cayley[a, b]`` = index of ``a * b``; shape ``(order, order)``, int64."""
        n = self.order  # on the CPU, even when first asked under a torch.device("meta") context
        return torch.tensor([[self.compose(a, b) for b in range(n)] for a in range(n)], device="cpu")

    @cached_property
    def inverse(self) -> torch.Tensor:
        """``inverse[a]`` = index of ``a^-1``; shape ``(order,)``, int64."""
        return (self.cayley == 0).int().argmax(dim=1)

    @cached_property
    def matrices(self) -> torch.Tensor:
        """Integer matrices ``(order, 2, 2)`` of each element acting on centred
        ``(row, col)`` pixel coordinates, so that ``[g f](x) = f(M_g^-1 x)``."""
        rot = torch.tensor([[0, -1], [1, 0]], device="cpu")
        flip = torch.tensor([[1, 0], [0, -1]], device="cpu")
        mats = []
        for m, r in self.elements:
            mat = torch.eye(2, dtype=torch.long, device="cpu")
            for _ in range(r):
                mat = rot @ mat
            mats.append(flip @ mat if m else mat)
        return torch.stack(mats)

    # ------------------------------------------------------------- actions
    def transform_image(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Act with element ``g`` on the last two (spatial, square) axes of ``x``."""
        m, r = self.elements[g]
        y = torch.rot90(x, r, dims=(-2, -1)) if r else x
        return torch.flip(y, dims=(-1,)) if m else y

    def axis_permutation(self, g: int) -> torch.Tensor:
        """``perm`` with ``[g f](h) = f(perm[h])``, i.e. ``perm[h] = g^-1 h``."""
        return self.cayley[self.inverse[g]]

    def transform_features(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Act with ``g`` on a G-feature map ``(B, C, order, H, W)``: rotate/flip
        the plane and permute the group axis."""
        if x.dim() != 5 or x.shape[2] != self.order:
            raise ValueError(
                f"expected a G-feature map (B, C, {self.order}, H, W) for group "
                f"{self.name!r}, got shape {tuple(x.shape)}"
            )
        perm = self.axis_permutation(g).to(x.device)
        return self.transform_image(x.index_select(2, perm), g)


GROUP_NAMES = ("z2", "p4", "p4m")
_GROUPS = {
    "z2": Group("z2", rotations=1, mirrors=False),
    "p4": Group("p4", rotations=4, mirrors=False),
    "p4m": Group("p4m", rotations=4, mirrors=True),
}


def get_group(group: str | Group) -> Group:
    """Look a group up by name (``"z2"``, ``"p4"`` or ``"p4m"``)."""
    if isinstance(group, Group):
        return group
    try:
        return _GROUPS[group]
    except (KeyError, TypeError):
        raise ValueError(f"unknown group {group!r}; expected one of {list(GROUP_NAMES)}") from None
