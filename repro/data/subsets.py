"""Class-balanced subsets and validation splits, deterministic given a seed.

A subset of ``size`` images from ``K`` classes takes ``size // K`` images of every
class plus one more image of each of the first ``size % K`` classes (class index
order). Within a class the images are taken in the order of one seeded random
permutation, so for a fixed seed a smaller subset is contained in a larger one.
"""
from __future__ import annotations

import torch

from repro.data.errors import DataError

__all__ = ["class_quotas", "balanced_subset", "split_off_balanced"]


def class_quotas(size: int, num_classes: int, name: str = "size") -> list[int]:
    """Images per class for a balanced subset of ``size``: floor share, remainder to
    the lowest class indices. ``name`` (e.g. ``data.train_size``) labels errors."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    if size < num_classes:
        raise DataError(f"{name}={size} is smaller than the number of classes ({num_classes}); "
                        f"a class-balanced subset needs at least one image per class")
    share, extra = divmod(size, num_classes)
    return [share + (c < extra) for c in range(num_classes)]


def balanced_subset(labels: torch.Tensor, size: int, num_classes: int, seed: int,
                    name: str = "size", pool: str = "the labels given") -> torch.Tensor:
    """Sorted int64 indices into ``labels`` (shape ``(N,)``) of a class-balanced subset;
    errors name the subset (``name``, e.g. ``data.train_size``) and the images it is
    drawn from (``pool``)."""
    quotas = class_quotas(size, num_classes, name)
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    chosen = []
    for c, quota in enumerate(quotas):
        members = torch.nonzero(labels == c).flatten()
        if quota > len(members):
            raise DataError(f"{name}={size} needs {quota} images of class {c} but only "
                            f"{len(members)} are available in {pool}; the largest balanced "
                            f"subset has {_largest_balanced(labels, num_classes)} images")
        order = torch.randperm(len(members), generator=gen)
        chosen.append(members[order[:quota]])
    return torch.cat(chosen).sort().values


def split_off_balanced(labels: torch.Tensor, size: int, num_classes: int, seed: int,
                       name: str = "size", pool: str = "the labels given",
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, held_out)`` sorted indices: ``held_out`` is a balanced subset of
    ``size`` images (e.g. a validation split), ``kept`` the rest."""
    held_out = balanced_subset(labels, size, num_classes, seed, name, pool)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out


def _largest_balanced(labels: torch.Tensor, num_classes: int) -> int:
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes]
    smallest = int(counts.min())
    # every class can give `smallest`; the remainder goes to the first classes with spare images
    return smallest * num_classes + _leading_spare(counts, smallest)


def _leading_spare(counts: torch.Tensor, smallest: int) -> int:
    spare = 0
    for count in counts.tolist():
        if count <= smallest:
            break
        spare += 1
    return spare
