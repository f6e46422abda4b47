"""Exact-resume data order: which image index each rank sees at each step of each epoch.

Epoch ``e``'s order is ``torch.randperm`` seeded with ``seed + e``, sharded by rank like
``DistributedSampler`` and able to start mid-epoch, so a run restored from a checkpoint continues
with exactly the batches an uninterrupted run would have seen (:mod:`fastmmd.data` reads the
position from the Trainer). Because the sampler shards itself, the Trainer is built with
``use_distributed_sampler=False``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    """Epoch ``e``'s order = ``randperm(num_samples, seed + e)``, sharded by rank, able to start mid-epoch.

    Like ``DistributedSampler``: the order is cut (``drop_last``) or padded by repeating it to a
    multiple of ``world_size`` and rank ``r`` takes ``order[r::world_size]``. Iteration skips the
    first ``start_batch * batch_size`` indices of this rank's share; ``len()`` is always the full share,
    which is what Lightning expects of a loader resumed mid-epoch.

    Args:
        num_samples: Dataset size.
        seed: Base seed; epoch ``e`` shuffles with ``seed + e``.
        rank: This process's rank.
        world_size: Number of ranks.
        drop_last: Cut the order to a multiple of ``world_size`` instead of padding it.
        batch_size: Unit of ``start_batch``.
        shuffle: False keeps the dataset order (still sharded).
        position: Called at each ``iter()``; returns (epoch, batches already done). When given it
            overrides :meth:`set_epoch` and ``start_batch`` (the datamodule reads them from the Trainer).
    """

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True,
                 batch_size: int = 1, shuffle: bool = True, position: Callable[[], tuple[int, int] | None] | None = None) -> None:
        if num_samples < 1 or world_size < 1 or not 0 <= rank < world_size or batch_size < 1:
            raise ValueError(f"bad sampler settings: num_samples={num_samples}, rank={rank}, world_size={world_size}, batch_size={batch_size}")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.drop_last, self.batch_size, self.shuffle, self.position = drop_last, batch_size, shuffle, position
        self.per_rank = num_samples // world_size if drop_last else math.ceil(num_samples / world_size)
        self.epoch = 0
        self.start_batch = 0  # used by the next iter() only
        self.current_epoch = 0  # epoch of the running iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's whole share of epoch ``epoch``."""
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank * self.world_size
        while len(order) < total:  # pad by repeating, as DistributedSampler does
            order += order[: total - len(order)]
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        where = self.position() if self.position is not None else None
        epoch, start = where if where is not None else (self.epoch, self.start_batch)
        self.start_batch, self.current_epoch = 0, epoch
        return iter(self.epoch_indices(epoch)[start * self.batch_size:])

    def __len__(self) -> int:
        return self.per_rank


class EpochKeys(Sampler[tuple[int, int]]):
    """Yields (index, epoch) from a :class:`ResumableSampler`, so crops can depend on the epoch."""

    def __init__(self, sampler: ResumableSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = iter(self.sampler)  # sets current_epoch
        return ((i, self.sampler.current_epoch) for i in indices)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableLoader(DataLoader):
    """The training DataLoader. Its state names the order's inputs so Lightning knows it resumes exactly."""

    def state_dict(self) -> dict[str, int]:
        s = getattr(getattr(self.batch_sampler, "sampler", None), "sampler", None)  # BatchSampler -> EpochKeys -> ResumableSampler
        if not isinstance(s, ResumableSampler):  # Lightning swapped the sampler (overfit_batches)
            return {}
        return {"seed": s.seed, "num_samples": s.num_samples, "world_size": s.world_size, "batch_size": s.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        now = self.state_dict()
        changed = {k: (v, now[k]) for k, v in state.items() if now.get(k) != v}
        if changed:
            warnings.warn(f"resuming with different data settings {changed} (saved, now): the data order is not the one "
                          "of the interrupted run", UserWarning, stacklevel=2)


class StreamLoader(DataLoader):
    """DataLoader over a :class:`StreamDataset` that sets the stream's epoch before each pass."""

    epoch_of: Callable[[], int] | None = None

    def __iter__(self) -> Any:
        if self.epoch_of is not None:
            self.dataset.set_epoch(self.epoch_of())
        return super().__iter__()
