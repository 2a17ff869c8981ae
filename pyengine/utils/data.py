"""``pyengine.utils.data``: torch.utils.data's names (Dataset, TensorDataset, Subset,
random_split, DataLoader) over pyengine.data's threaded loader, which pyengine.data keeps for the
imaging datasets.

``DataLoader`` takes torch's arguments. Shuffling draws its seed from pyengine's generator when
the loader is built (so ``pyengine.manual_seed`` makes it reproducible) and then permutes with
(seed, epoch); workers are threads (see pyengine/data/loader.py), ``pin_memory`` is accepted and
has nothing to do on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from pyengine import random
from pyengine.data.loader import DataLoader as _ThreadedLoader
from pyengine.data.loader import default_collate
from pyengine.tensor import Tensor

__all__ = [
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "Subset",
    "TensorDataset",
    "default_collate",
    "random_split",
]


class Dataset:
    """A map-style dataset: subclasses define ``__getitem__`` (and usually ``__len__``)."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")


class TensorDataset(Dataset):
    """Sample i is ``tuple(t[i] for t in tensors)``; every tensor has the same first dim."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        n = tensors[0].shape[0] if tensors[0].ndim else None
        if n is None or any(t.ndim == 0 or t.shape[0] != n for t in tensors):
            raise ValueError("Size mismatch between tensors")
        self.tensors = tensors

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class ConcatDataset(Dataset):
    """The datasets one after another."""

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of length {n}")
        index %= n
        k = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k][index - start]


class Subset(Dataset):
    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(
    dataset: Any, lengths: Sequence[float], generator: np.random.Generator | None = None
) -> list[Subset]:
    """Disjoint random subsets of the given lengths (or fractions summing to 1, as torch)."""
    n = len(dataset)
    if all(0 <= f <= 1 for f in lengths) and abs(sum(lengths) - 1) < 1e-9 and sum(lengths) != n:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
    else:
        sizes = [int(v) for v in lengths]
    if sum(sizes) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    perm = (generator or random.generator()).permutation(n)
    out, start = [], 0
    for k in sizes:
        out.append(Subset(dataset, perm[start : start + k].tolist()))
        start += k
    return out


class DataLoader(_ThreadedLoader):
    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[int] | None = None,
        batch_sampler: Iterable[Sequence[int]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Sequence[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: np.random.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
    ) -> None:
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (
            batch_size != 1 or shuffle or sampler is not None or drop_last
        ):
            raise ValueError(
                "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                "and drop_last"
            )
        if batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with "
                "drop_last"
            )
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        seed = int((generator or random.generator()).integers(2**63))
        super().__init__(
            dataset,
            batch_size=batch_size or 1,
            shuffle=bool(shuffle),
            seed=seed,
            num_workers=num_workers,
            drop_last=drop_last,
            collate_fn=collate_fn,
            prefetch=prefetch_factor or 2,
        )
        self.auto_batch = batch_size is not None
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.pin_memory, self.timeout = pin_memory, timeout
        self.worker_init_fn = worker_init_fn
        if worker_init_fn is not None:
            for i in range(num_workers):
                worker_init_fn(i)
        if not self.auto_batch and collate_fn is None:
            self.collate_fn = _no_batch

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        if self.sampler is None:
            return super().__len__() if self.auto_batch else len(self.dataset)
        n = len(self.sampler)
        if not self.auto_batch:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self.batch_sampler is not None:
            return [np.asarray(list(b), np.int64) for b in self.batch_sampler]
        if not self.auto_batch:
            order = list(self.sampler) if self.sampler is not None else range(len(self.dataset))
            return [np.asarray([i], np.int64) for i in order]
        if self.sampler is None:
            return super()._batches(epoch)
        order = np.asarray(list(self.sampler), np.int64)
        stop = len(self) * self.batch_size
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]


def _no_batch(samples: Sequence[Any]) -> Any:
    """batch_size=None: each sample is returned as is."""
    return samples[0]
