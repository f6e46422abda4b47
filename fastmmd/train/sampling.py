"""Exact-resume data order: which image index each rank sees at each step of each epoch.

Epoch ``e``'s order is ``torch.randperm`` seeded with ``seed + e``, sharded by rank like
``DistributedSampler`` and able to start mid-epoch, so a run restored from a checkpoint continues
with exactly the batches an uninterrupted run would have seen. Only Lightning's public data
protocol carries the position across a restart:

* the epoch comes from ``set_epoch``, which Lightning calls on the loader's sampler before every
  epoch (the same call ``DistributedSampler`` relies on);
* the batches already trained on come from the loader's ``state_dict``/``load_state_dict``, which
  Lightning stores in the checkpoint and hands back on resume (a "stateful" DataLoader).

:class:`EpochKeys` is a ``DistributedSampler``, so Lightning never wraps it in a second, sharding
sampler, whatever ``Trainer(use_distributed_sampler=...)`` says (documented Lightning behaviour: "If
a distributed sampler was already added, Lightning will not replace the existing one").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler


class ResumableSampler(Sampler[int]):
    """Epoch ``e``'s order = ``randperm(num_samples, seed + e)``, sharded by rank, able to start mid-epoch.

    Like ``DistributedSampler``: the order is cut (``drop_last``) or padded by repeating it to a
    multiple of ``world_size`` and rank ``r`` takes ``order[r::world_size]``. Iteration skips the
    first ``start_batch * batch_size`` indices of this rank's share (once: the next ``iter()`` starts
    at 0 again); ``len()`` is always the full share, which is what Lightning expects of a loader
    resumed mid-epoch.

    Args:
        num_samples: Dataset size.
        seed: Base seed; epoch ``e`` shuffles with ``seed + e``.
        rank: This process's rank.
        world_size: Number of ranks.
        drop_last: Cut the order to a multiple of ``world_size`` instead of padding it.
        batch_size: Unit of ``start_batch``.
        shuffle: False keeps the dataset order (still sharded).
    """

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True,
                 batch_size: int = 1, shuffle: bool = True) -> None:
        if num_samples < 1 or world_size < 1 or not 0 <= rank < world_size or batch_size < 1:
            raise ValueError(f"bad sampler settings: num_samples={num_samples}, rank={rank}, world_size={world_size}, batch_size={batch_size}")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.drop_last, self.batch_size, self.shuffle = drop_last, batch_size, shuffle
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
        epoch, start = self.epoch, self.start_batch
        self.start_batch, self.current_epoch = 0, epoch
        return iter(self.epoch_indices(epoch)[start * self.batch_size:])

    def __len__(self) -> int:
        return self.per_rank


class EpochKeys(DistributedSampler):
    """Yields (index, epoch) from a :class:`ResumableSampler`, so crops can depend on the epoch.

    A ``DistributedSampler`` only so that Lightning leaves it in place (see the module docstring);
    the order and sharding are the wrapped sampler's. ``DistributedSampler.__init__`` is not called:
    it would ask the process group for a world size this sampler already knows.
    """

    def __init__(self, sampler: ResumableSampler) -> None:  # noqa: D107 - see the class docstring
        self.sampler = sampler
        self.num_replicas, self.rank, self.shuffle, self.seed = sampler.world_size, sampler.rank, sampler.shuffle, sampler.seed
        self.drop_last, self.num_samples, self.total_size = sampler.drop_last, len(sampler), len(sampler) * sampler.world_size

    @property
    def epoch(self) -> int:  # type: ignore[override]  # DistributedSampler's attribute, kept in one place
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = iter(self.sampler)  # sets current_epoch
        return ((i, self.sampler.current_epoch) for i in indices)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableLoader(DataLoader):
    """The training DataLoader: a stateful loader whose state is its position in the data order.

    ``state_dict()`` holds the epoch being read and how many of its batches were handed out, plus the
    order's inputs (seed, sizes) to check on resume. Lightning calls it when saving a checkpoint and
    calls ``load_state_dict()`` before the resumed run iterates; the next iteration then starts at
    that batch if it reads the same epoch (Lightning's ``set_epoch`` decides: a checkpoint written
    after an epoch's last batch resumes at the next epoch, from its start).

    Iteration starts its workers at the first ``next()``, not at ``iter()``: Lightning creates the
    iterator before it calls ``set_epoch`` for the first epoch of a run, and workers prefetch indices
    as soon as they start. Batches are counted as they are handed out; Lightning does not prefetch
    from a loader with a length, so the count is the number of batches trained on (or being trained
    on) when a checkpoint is written.
    """

    _pending: tuple[int, int] | None = None  # (epoch, batches) from load_state_dict, for the next iteration
    _epoch: int | None = None  # epoch of the running (or last) iteration
    _done = 0  # batches of it handed out, counting those skipped on resume

    def _sampler(self) -> ResumableSampler | None:
        """The ResumableSampler under BatchSampler -> EpochKeys; None if Lightning swapped it (overfit_batches)."""
        keys = getattr(self.batch_sampler, "sampler", None)
        return keys.sampler if isinstance(keys, EpochKeys) else None

    def __iter__(self) -> Iterator[Any]:
        return self._counted()

    def _counted(self) -> Iterator[Any]:
        sampler = self._sampler()
        if sampler is None:
            yield from super().__iter__()
            return
        pending, self._pending = self._pending, None
        start = pending[1] if pending is not None and pending[0] == sampler.epoch and pending[1] < len(self) else 0
        sampler.start_batch, self._epoch, self._done = start, sampler.epoch, start
        for batch in super().__iter__():
            self._done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler = self._sampler()
        if sampler is None:
            return {}
        if self._pending is not None:  # restored but not iterated yet: keep the restored position
            epoch, done = self._pending
        else:
            epoch, done = (self._epoch, self._done) if self._epoch is not None else (sampler.epoch, 0)
        return {"seed": sampler.seed, "num_samples": sampler.num_samples, "world_size": sampler.world_size,
                "batch_size": sampler.batch_size, "epoch": epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        now = self.state_dict()
        if not now:
            return
        changed = {k: (v, now[k]) for k, v in state.items() if k not in ("epoch", "batches") and now.get(k) != v}
        if changed:
            warnings.warn(f"resuming with different data settings {changed} (saved, now): the data order is not the one "
                          "of the interrupted run", UserWarning, stacklevel=2)
        if "epoch" not in state or "batches" not in state:
            warnings.warn("the checkpoint does not record the position in the data (written by an older fastmmd): "
                          "the interrupted epoch restarts from its first batch", UserWarning, stacklevel=2)
            return
        images = state["batches"] * state.get("batch_size", now["batch_size"]) * state.get("world_size", now["world_size"])
        self._pending = (int(state["epoch"]), images // (now["batch_size"] * now["world_size"]))


class StreamLoader(DataLoader):
    """DataLoader over a :class:`~fastmmd.train.data.StreamDataset` that sets the stream's epoch before each pass.

    ``epoch_of`` is read at the first ``next()`` (Lightning's epoch counter is final by then, also
    right after a resume). Not stateful: a streamed epoch resumes from its beginning.
    """

    epoch_of: Callable[[], int] | None = None

    def __iter__(self) -> Iterator[Any]:
        return self._with_epoch()

    def _with_epoch(self) -> Iterator[Any]:
        if self.epoch_of is not None:
            self.dataset.set_epoch(self.epoch_of())
        yield from super().__iter__()
