"""Which scans make up each step's batch: a pure function of (seed, step), for any process count.

The data stream is an endless sequence of epochs, each a permutation of the dataset seeded by
(seed, epoch). Global batch ``s`` is positions ``[s * B, (s + 1) * B)`` of that stream, and
process ``r`` of ``W`` takes the contiguous slice ``[r * B / W, (r + 1) * B / W)`` of it. So:

* the global batch of a step is the same whether 1 or W processes train (the DDP equivalence);
* resuming at step s needs nothing but s (no sampler state to save);
* a dataset smaller than the batch is fine (a batch then spans two epochs).

Items are keys ``(epoch, index)``: the dataset seeds each item's augmentation and masks from the
key, so an item is the same in any worker process, in any run, after any resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class GlobalBatchSampler:
    """Batch sampler for ``DataLoader(batch_sampler=...)`` yielding lists of (epoch, index) keys."""

    def __init__(
        self,
        dataset_size: int,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        end_step: int,
        shuffle: bool = True,
    ) -> None:
        if dataset_size < 1:
            raise ValueError("the training set is empty")
        if global_batch % world_size:
            raise ValueError(
                f"the global batch ({global_batch}) must be a multiple of the number of processes ({world_size})"
            )
        self.dataset_size = int(dataset_size)
        self.global_batch = int(global_batch)
        self.local_batch = self.global_batch // world_size
        self.seed = int(seed)
        self.rank = int(rank)
        self.start_step = int(start_step)
        self.end_step = int(end_step)
        self.shuffle = shuffle
        self._cached_epoch: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._cached_epoch is not None and self._cached_epoch[0] == epoch:
            return self._cached_epoch[1]
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
            if self.shuffle
            else np.arange(self.dataset_size)
        )
        self._cached_epoch = (epoch, order)
        return order

    def global_keys(self, step: int) -> list[tuple[int, int]]:
        """The whole global batch of ``step`` as (epoch, index) keys."""
        positions = range(step * self.global_batch, (step + 1) * self.global_batch)
        return [
            (p // self.dataset_size, int(self.epoch_order(p // self.dataset_size)[p % self.dataset_size]))
            for p in positions
        ]

    def local_keys(self, step: int) -> list[tuple[int, int]]:
        keys = self.global_keys(step)
        return keys[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]

    def epoch_of(self, step: int) -> float:
        return step * self.global_batch / self.dataset_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.end_step):
            yield self.local_keys(step)
