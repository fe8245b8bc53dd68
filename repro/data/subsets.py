"""Class-balanced subsets and validation splits, deterministic given a seed.

``size`` images of ``K`` classes are ``size // K`` of every class plus one more of each of the
first ``size % K``. Within a class they are taken in one seeded random order, so for a fixed
seed a smaller subset is contained in a larger one.
"""
from __future__ import annotations

import torch

from repro.data.errors import DataError


def class_quotas(size: int, num_classes: int, name: str = "size") -> list[int]:
    """Images per class of a balanced subset of ``size``; ``name`` (e.g. ``data.train_size``) labels errors."""
    if size < num_classes:
        raise DataError(f"{name}={size} is smaller than the number of classes ({num_classes}); "
                        f"a class-balanced subset needs at least one image per class")
    share, extra = divmod(size, num_classes)
    return [share + (c < extra) for c in range(num_classes)]


def balanced_subset(labels: torch.Tensor, size: int, num_classes: int, seed: int,
                    name: str = "size", pool: str = "the labels given") -> torch.Tensor:
    """Sorted int64 indices into ``labels`` ``(N,)`` of a class-balanced subset; errors name the
    subset (``name``, e.g. ``data.train_size``) and the images it is drawn from (``pool``)."""
    quotas = class_quotas(size, num_classes, name)
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes]
    chosen = []
    for c, quota in enumerate(quotas):
        if quota > counts[c]:
            smallest = int(counts.min())
            # every class can give `smallest`, and each leading class with more one extra
            largest = smallest * num_classes + int((counts > smallest).int().cumprod(0).sum())
            raise DataError(f"{name}={size} needs {quota} images of class {c} but only "
                            f"{int(counts[c])} are available in {pool}; the largest balanced "
                            f"subset has {largest} images")
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[:quota]])
    return torch.cat(chosen).sort().values


def split_off_balanced(labels: torch.Tensor, size: int, num_classes: int, seed: int,
                       name: str = "size", pool: str = "the labels given",
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, held_out)`` sorted indices: ``held_out`` is a balanced subset of ``size`` images
    (e.g. a validation split), ``kept`` the rest."""
    held_out = balanced_subset(labels, size, num_classes, seed, name, pool)
    kept = torch.ones(len(labels), dtype=torch.bool).index_fill_(0, held_out, False)
    return torch.nonzero(kept).flatten(), held_out
