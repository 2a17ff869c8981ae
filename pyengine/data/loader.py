"""``DataLoader``: batching, seeded shuffling and background worker threads.

Workers are threads, not processes: decoding (Pillow) and NumPy release the GIL, and so do the
C++ kernels of the training step, so batches are built while the previous step computes. Batches
come back in order, and each batch's content depends only on (seed, epoch), never on timing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from pyengine.creation import from_numpy
from pyengine.ops.shape import stack
from pyengine.tensor import Tensor


def default_collate(samples: Sequence[Any]) -> Any:
    """Stack samples (tensors, arrays, numbers, or tuples/dicts of them) along a new first axis
    into pyengine tensors, as torch's default_collate."""
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(list(samples))
    if isinstance(first, Mapping):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[k] for s in samples]) for k in range(len(first)))
    if isinstance(first, np.ndarray):
        return from_numpy(np.ascontiguousarray(np.stack(samples)))
    if isinstance(first, (int, float, np.number)):
        return from_numpy(np.asarray(samples))
    return list(samples)


class DataLoader:
    """Iterate over ``dataset`` in batches.

    ``shuffle`` permutes the indices with a generator seeded by ``(seed, epoch)``. Each ``iter()``
    is one epoch and advances the epoch counter; ``set_epoch(e)`` sets the next epoch (for resuming)
    and is forwarded to the dataset and the ``sampler`` when they have a ``set_epoch``.
    ``sampler`` (e.g. a ``DistributedSampler``) chooses the indices instead of ``shuffle``.
    ``num_workers`` > 0 builds up to ``num_workers * prefetch`` batches ahead in threads.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        drop_last: bool = False,
        collate_fn: Callable[[Sequence[Any]], Any] | None = None,
        prefetch: int = 2,
        sampler: Any = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0 or prefetch < 1:
            raise ValueError(
                f"need num_workers >= 0 and prefetch >= 1, got {num_workers}, {prefetch}"
            )
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.num_workers, self.drop_last, self.prefetch = num_workers, drop_last, prefetch
        self.collate_fn = collate_fn or default_collate
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.fromiter(self.sampler, np.int64)
        elif self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(n)
        else:
            order = np.arange(n)
        return [
            order[i : i + self.batch_size]
            for i in range(0, len(self) * self.batch_size, self.batch_size)
        ]

    def _make(self, idx: np.ndarray) -> Any:
        return self.collate_fn([self.dataset[int(i)] for i in idx])

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        for source in (self.dataset, self.sampler):
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)
        batches = self._batches(epoch)
        if self.num_workers == 0:
            return (self._make(b) for b in batches)
        return self._threaded(batches)

    def _threaded(self, batches: list[np.ndarray]) -> Iterator[Any]:
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="pyengine-data")
        pending: deque[Future] = deque()
        todo = iter(batches)
        try:
            for b in todo:
                pending.append(pool.submit(self._make, b))
                if len(pending) >= self.num_workers * self.prefetch:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._make, nxt))
                yield batch
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False)
