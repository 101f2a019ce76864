"""The order of an epoch: which items go into which batch, on which rank. Deterministic for a seed
and an epoch, so a run that resumes (or a rank that restarts) sees exactly the batches it would have."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ParameterError


def distributed_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` from ``torch.distributed`` when it is initialised, else ``(0, 1)``."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch always has it
        pass
    return 0, 1


class AudioSampler:
    """Batches of item indices for one rank.

    Args:
        num_items: items in the dataset.
        batch_size: items per batch (``batch_by="count"``).
        shuffle: shuffle every epoch (seeded by ``seed`` and the epoch).
        seed: the shuffle's seed; the same seed and epoch give the same batches.
        drop_last: drop the last, smaller batch (per rank).
        rank, world_size: this process's share of the data; items (or, with duration batching, whole
            batches) are dealt round-robin, padded by repetition so every rank gets the same number of
            batches (as ``DistributedSampler`` does) unless ``drop_last``.
        batch_by: 'count' (``batch_size`` items) or 'duration' (about ``batch_seconds`` of padded audio
            per batch: items of similar length are grouped, so padding stays small).
        batch_seconds: target padded seconds per batch for ``batch_by='duration'`` (batch size times
            the longest item in it).
        durations: seconds per item (after cropping), needed for ``batch_by='duration'``; a callable
            is asked once, on first use.
        pool_batches: duration batching sorts items by length within pools of this many batches' worth
            of items (larger: less padding, less randomness).
    """

    def __init__(self, num_items: int, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, batch_by: str = "count",
                 batch_seconds: float | None = None,
                 durations: Sequence[float] | np.ndarray | Callable[[], np.ndarray] | None = None,
                 pool_batches: int = 50) -> None:
        if batch_by not in ("count", "duration"):
            raise ParameterError(f"batch_by must be 'count' or 'duration', got {batch_by!r}")
        if batch_by == "duration" and not (batch_seconds and batch_seconds > 0):
            raise ParameterError("batch_by='duration' needs batch_seconds > 0 (padded seconds per batch)")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ParameterError(f"rank {rank} is not in [0, {world_size})")
        self.num_items, self.batch_size, self.shuffle, self.seed = num_items, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.batch_by, self.batch_seconds, self.pool_batches = batch_by, batch_seconds, pool_batches
        self._durations = durations

    @property
    def durations(self) -> np.ndarray:
        if callable(self._durations):
            self._durations = np.asarray(self._durations(), np.float64)
        if self._durations is None:
            raise ParameterError("batch_by='duration' needs the items' durations")
        return np.asarray(self._durations, np.float64)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def batches(self, epoch: int = 0) -> list[list[int]]:
        """This rank's batches for ``epoch``."""
        if self.batch_by == "duration":
            return self._share(self._duration_batches(epoch), epoch)
        order = self._order(epoch)
        if self.world_size > 1:
            per_rank = len(order) // self.world_size if self.drop_last else math.ceil(len(order) / self.world_size)
            total = per_rank * self.world_size
            order = np.resize(order, total) if total > len(order) else order[:total]
            order = order[self.rank::self.world_size]
        cut = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        return [order[i:i + self.batch_size].tolist() for i in range(0, cut, self.batch_size)]

    def _duration_batches(self, epoch: int) -> list[list[int]]:
        durations = self.durations
        order = self._order(epoch)
        mean = float(durations.mean()) if len(durations) else 1.0
        pool = max(1, int(self.pool_batches * max(1.0, self.batch_seconds / max(mean, 1e-3))))
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(durations[chunk], kind="stable")]
            current: list[int] = []
            longest = 0.0
            for index in chunk.tolist():
                longest_if_added = max(longest, durations[index])
                if current and longest_if_added * (len(current) + 1) > self.batch_seconds:
                    batches.append(current)
                    current, longest_if_added = [], durations[index]
                current.append(index)
                longest = longest_if_added
            if current:
                batches.append(current)
        if self.shuffle:  # the pools were sorted by length: shuffle which batch comes when
            rng = np.random.default_rng([self.seed, epoch, 1])
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last and batches and len(batches[-1]) < max(len(b) for b in batches) // 2:
            batches = batches[:-1]
        return batches

    def _share(self, batches: list[list[int]], epoch: int) -> list[list[int]]:
        if self.world_size == 1:
            return batches
        per_rank = len(batches) // self.world_size if self.drop_last else math.ceil(len(batches) / self.world_size)
        total = per_rank * self.world_size
        padded = [batches[i % len(batches)] for i in range(total)] if batches else []
        return padded[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.batches(0))
