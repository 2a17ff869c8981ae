"""pyengine.utils.data: torch.utils.data's names and arguments (Dataset, TensorDataset, Subset,
random_split, DataLoader with batch_size/shuffle/drop_last/num_workers/collate_fn/pin_memory,
samplers), checked against torch's DataLoader on the same data."""

import numpy as np
import pytest

import pyengine as pe
from pyengine.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split


def _tds(lib, n=10):
    x = lib.tensor(np.arange(n * 3, dtype=np.float32).reshape(n, 3))
    y = lib.tensor(np.arange(n, dtype=np.int64))
    return lib.utils.data.TensorDataset(x, y) if lib is not pe else TensorDataset(x, y)


@pytest.mark.parametrize(
    "batch_size,drop_last", [(1, False), (3, False), (3, True), (10, False), (4, True)]
)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_unshuffled_batches_match_torch(torch, batch_size, drop_last, num_workers):
    kw = dict(batch_size=batch_size, drop_last=drop_last)
    ours = list(DataLoader(_tds(pe), num_workers=num_workers, pin_memory=True, **kw))
    ref = list(torch.utils.data.DataLoader(_tds(torch), **kw))
    assert len(ours) == len(ref) == len(DataLoader(_tds(pe), **kw))
    for (xa, ya), (xb, yb) in zip(ours, ref):
        assert xa.dtype == pe.float32 and ya.dtype == pe.int64
        assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())


def test_shuffle_is_a_seeded_permutation_per_epoch():
    pe.manual_seed(3)
    dl = DataLoader(_tds(pe), batch_size=4, shuffle=True)
    e1 = np.concatenate([y.numpy() for _, y in dl])
    e2 = np.concatenate([y.numpy() for _, y in dl])
    assert sorted(e1) == list(range(10)) and sorted(e2) == list(range(10))
    assert not np.array_equal(e1, e2)
    pe.manual_seed(3)
    again = DataLoader(_tds(pe), batch_size=4, shuffle=True)
    assert np.array_equal(np.concatenate([y.numpy() for _, y in again]), e1)


def test_custom_dataset_collate_and_samplers(torch):
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.full(2, i, np.float32), "y": i * i}

    b = next(iter(DataLoader(Squares(), batch_size=5)))
    assert b["x"].shape == (5, 2) and b["y"].tolist() == [0, 1, 4, 9, 16]
    ids = list(DataLoader(Squares(), batch_size=2, collate_fn=lambda s: [d["y"] for d in s]))
    assert ids == [[0, 1], [4, 9], [16]]
    assert [d["y"] for d in DataLoader(Squares(), batch_size=None, sampler=[4, 0])] == [16, 0]
    got = list(DataLoader(Squares(), batch_sampler=[[3, 1], [0]], collate_fn=len))
    assert got == [2, 1]
    lens = [len(b["y"]) for b in DataLoader(Squares(), batch_size=2, sampler=[4, 3, 2])]
    assert lens == [2, 1]


def test_subset_random_split_and_errors():
    ds = _tds(pe)
    pe.manual_seed(0)
    a, b = random_split(ds, [7, 3])
    assert len(a) == 7 and len(b) == 3
    assert sorted([int(a[i][1]) for i in range(7)] + [int(b[i][1]) for i in range(3)]) == list(
        range(10)
    )
    assert [len(s) for s in random_split(ds, [0.5, 0.5])] == [5, 5]
    assert int(Subset(ds, [4, 2])[1][1]) == 2
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(pe.ones(3), pe.ones(4))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, shuffle=True, sampler=[0, 1])
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0]])
    with pytest.raises(NotImplementedError):
        Dataset()[0]


def test_concat_dataset(torch):
    from pyengine.utils.data import ConcatDataset

    parts = [list(range(3)), list(range(10, 12)), [], list(range(20, 24))]
    ours, ref = ConcatDataset(parts), torch.utils.data.ConcatDataset(parts)
    assert len(ours) == len(ref) == 9
    assert [ours[i] for i in range(-9, 9)] == [ref[i] for i in range(-9, 9)]
    assert ours.cumulative_sizes == ref.cumulative_sizes
    with pytest.raises(IndexError):
        ours[9]
