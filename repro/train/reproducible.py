"""Pure helpers that make a run reproducible and resumable: seeds derived from
(run seed, epoch, stream), determinism flags, and the batch order of every step."""
from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["stream_seed", "seed_everything", "determinism", "global_batches", "epoch_batches"]


def stream_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """An independent 63-bit seed for (run seed, epoch, stream, rank)."""
    state = np.random.SeedSequence([seed, epoch, stream, rank]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(deterministic: bool) -> Iterator[None]:
    """Deterministic algorithms (else cudnn benchmark) inside; the process's flags are restored
    after, so a run inside a test session or a notebook leaves no trace."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def global_batches(order: torch.Tensor, batch_size: int, world_size: int = 1, *,
                   drop_last: bool = False) -> list[torch.Tensor]:
    """Split an index order into global batches. A last partial batch is kept when every rank
    gets at least one image of it, and never with ``drop_last`` (static shapes under compile)."""
    batches = list(order.split(batch_size))
    if batches and (batches[-1].numel() < world_size or (drop_last and batches[-1].numel() < batch_size)):
        batches.pop()
    return batches


def epoch_batches(seed: int, epoch: int, n: int, batch_size: int, steps_per_epoch: int | None, *,
                  world_size: int = 1, drop_last: bool = False) -> list[torch.Tensor]:
    """The global batches (CPU index tensors) of epoch ``epoch`` (1-based).

    Step ``t`` (0-based over the run) takes batch ``t % B`` of pass ``t // B`` over the ``n``
    images, where pass ``p`` is a permutation seeded by ``(seed, p + 1)`` with ``B`` batches.
    Epoch ``e`` is steps ``(e - 1) * S .. e * S - 1`` with ``S = steps_per_epoch`` (default
    ``B``), so any epoch can be rebuilt from the seed alone (exact resume).
    """
    per_pass = len(global_batches(torch.arange(n), batch_size, world_size, drop_last=drop_last))
    if per_pass == 0:
        return []
    per_epoch = steps_per_epoch or per_pass
    steps = range((epoch - 1) * per_epoch, epoch * per_epoch)
    passes = {}
    for p in {t // per_pass for t in steps}:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(seed, p + 1, 1)))
        passes[p] = global_batches(order, batch_size, world_size, drop_last=drop_last)
    return [passes[t // per_pass][t % per_pass] for t in steps]
