"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: ``python distributed_worker.py NAME``
runs scenario NAME on every rank and prints ``rank R ok`` when its checks pass."""

import gc
import sys
import time
import weakref

import numpy as np

import pyengine as pe
import pyengine.distributed as dist
import pyengine.nn.functional as F
from pyengine import nn
from pyengine.nn.parallel import DistributedDataParallel as DDP

DTYPES = ["float32", "float64", "int64", "int32", "uint8", "bool"]
SIZES = [(), (0,), (1,), (7,), (3, 5), (300_001,)]


def collectives(rank: int, world: int) -> None:
    for dt in DTYPES:
        for shape in SIZES:
            n = int(np.prod(shape))
            base = (np.arange(n).reshape(shape) % 5).astype(dt)
            peers = [
                np.asarray((base + r + 1) if dt != "bool" else (base + r) % 2 == 1, dt)
                for r in range(world)
            ]
            mine = peers[rank]
            ops = [dist.ReduceOp.SUM, dist.ReduceOp.MAX, dist.ReduceOp.MIN, dist.ReduceOp.PRODUCT]
            if dt.startswith("float"):
                ops.append(dist.ReduceOp.AVG)
            for op in ops:
                t = pe.from_numpy(mine.copy())
                assert dist.all_reduce(t, op) is None
                if dt == "bool":
                    fold = np.logical_or if op in (dist.ReduceOp.SUM, dist.ReduceOp.MAX) else None
                    fold = fold or np.logical_and
                    want = fold.reduce(peers)
                elif op is dist.ReduceOp.AVG:
                    want = np.sum(peers, axis=0, dtype=dt) / world
                else:
                    ufunc = {"SUM": np.add, "MAX": np.maximum, "MIN": np.minimum}
                    fold = ufunc.get(op.name, np.multiply)
                    want = fold.reduce(np.stack(peers), axis=0, dtype=dt)
                np.testing.assert_allclose(t.numpy(), want.astype(dt), rtol=1e-6)
                assert t.dtype == np.dtype(dt) and t.shape == shape
            b = pe.from_numpy(mine.copy())
            dist.broadcast(b, src=1)
            np.testing.assert_array_equal(b.numpy(), peers[1])
            outs = [pe.from_numpy(np.zeros(shape, dt)) for _ in range(world)]
            work = dist.all_gather(outs, pe.from_numpy(mine.copy()), async_op=True)
            work.wait()
            for r in range(world):
                np.testing.assert_array_equal(outs[r].numpy(), peers[r])
    objs = [{"rank": rank}, "x"] if rank == 0 else [None]
    dist.broadcast_object_list(objs, src=0)
    assert objs == [{"rank": 0}, "x"]
    t = pe.ones(3)
    for bad, call in (
        (ValueError, lambda: dist.broadcast(t, src=world)),
        (ValueError, lambda: dist.all_gather([t], t)),
        (TypeError, lambda: dist.all_reduce(np.ones(3))),
        (TypeError, lambda: dist.all_reduce(pe.ones(2).long(), dist.ReduceOp.AVG)),
        (RuntimeError, lambda: dist.init_process_group()),
    ):
        try:
            call()
        except bad:
            pass
        else:
            raise AssertionError(f"expected {bad.__name__}")
    dist.barrier()


def conv_net(sync_bn: bool) -> nn.Module:
    # no bias before a BatchNorm: its exact gradient is 0, and Adam would amplify rounding noise
    layers = [
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=not sync_bn),
    ]
    if sync_bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def _data(step: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((batch, 2, 6, 6)).astype(np.float32), rng.integers(0, 3, batch)


def _train(model: nn.Module, opt_name: str, shard: slice, steps: int, batch: int) -> None:
    opt = (
        pe.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if opt_name == "sgd"
        else pe.optim.Adam(model.parameters(), lr=1e-2)
    )
    for step in range(steps):
        x, y = _data(step, batch)
        loss = F.cross_entropy(model(pe.from_numpy(x[shard])), pe.from_numpy(y[shard]))
        opt.zero_grad()
        loss.backward()
        opt.step()


def ddp_matches_one_process(rank: int, world: int) -> None:
    B, K = 8, 3
    for sync_bn in (False, True):
        for opt_name in ("sgd", "adam"):
            for cap in (25, 1e-6):  # one bucket (plus the first), or one per parameter
                pe.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's
                local = conv_net(sync_bn)
                if sync_bn:
                    local = nn.SyncBatchNorm.convert_sync_batchnorm(local)
                model = DDP(local, bucket_cap_mb=cap)
                if cap < 1:
                    assert len(model._buckets) == len(list(local.parameters()))
                ref = conv_net(sync_bn)
                ref.load_state_dict(local.state_dict())
                b = B // world
                _train(model, opt_name, slice(rank * b, (rank + 1) * b), K, B)
                _train(ref, opt_name, slice(0, B), K, B)
                for (name, p), q in zip(local.state_dict().items(), ref.state_dict().values()):
                    np.testing.assert_allclose(
                        p.numpy(),
                        q.numpy(),
                        rtol=2e-4,
                        atol=2e-5,
                        err_msg=f"{name} {opt_name} cap {cap} sync_bn {sync_bn}",
                    )
                assert list(model.state_dict())[0].startswith("module.")
                gone = weakref.ref(model)
                del model
                gc.collect()
                assert gone() is None  # the gradient hooks do not keep the wrapper alive


def no_sync_accumulates(rank: int, world: int) -> None:
    """Two micro-batches per rank, the first under no_sync: the averaged sum of both equals one
    process's gradients of two global batches."""
    pe.manual_seed(0)
    local = conv_net(False)
    model = DDP(local)
    ref = conv_net(False)
    ref.load_state_dict(local.state_dict())
    x, y = _data(0, 4 * world)
    micro = [slice(2 * k, 2 * k + 2) for k in range(2 * world)]
    with model.no_sync():
        s = micro[rank]
        F.cross_entropy(model(pe.from_numpy(x[s])), pe.from_numpy(y[s])).backward()
    g_local = [p.grad.numpy().copy() for p in local.parameters()]
    s = micro[world + rank]
    F.cross_entropy(model(pe.from_numpy(x[s])), pe.from_numpy(y[s])).backward()
    for h in (slice(0, 2 * world), slice(2 * world, 4 * world)):
        F.cross_entropy(ref(pe.from_numpy(x[h])), pe.from_numpy(y[h])).backward()
    for p, q, g0 in zip(local.parameters(), ref.parameters(), g_local):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
        assert not np.allclose(g0, p.grad.numpy())  # no_sync really skipped the all-reduce


def buckets_start_during_backward(rank: int, world: int) -> None:
    """Buckets hold the parameters in reverse registration order, and each starts its all-reduce
    as soon as its gradients are in, before backward reaches the first layers."""
    local = conv_net(False)
    params = list(local.parameters())
    model = DDP(local, bucket_cap_mb=1e-6)  # one bucket per parameter
    assert [b.params[0] for b in model._buckets] == params[::-1]
    launched = []
    for p in params:
        p.register_post_accumulate_grad_hook(lambda p: launched.append(model._next))
    x, y = _data(0, 4)
    F.cross_entropy(model(pe.from_numpy(x)), pe.from_numpy(y)).backward()
    # DDP's hook runs first: after the k-th gradient, k buckets have started
    assert launched == list(range(1, len(params) + 1)), launched
    assert all(b.work is not None and b.work.done for b in model._buckets)


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(4, 2)
        self.never = nn.Linear(4, 2)

    def forward(self, x, head):
        return (self.a if head == "a" else self.b)(self.body(x))


def unused_parameters(rank: int, world: int) -> None:
    pe.manual_seed(0)
    x = pe.from_numpy(np.random.default_rng(rank).standard_normal((3, 4)).astype(np.float32))
    model = DDP(TwoHeads())
    model(x, "a").sum().backward()
    try:
        model(x, "a")
    except RuntimeError as e:
        assert "find_unused_parameters=True" in str(e), e
    else:
        raise AssertionError("a forward after an incomplete reduction must raise")
    dist.barrier()
    pe.manual_seed(0)
    inner = TwoHeads()
    model = DDP(inner, find_unused_parameters=True)
    head = "a" if rank == 0 else "b"  # a is used on rank 0 only, b on the others
    for _ in range(2):
        inner.zero_grad()
        model(x, head).sum().backward()
        assert inner.never.weight.grad is None  # unused on every rank: untouched
        # d(sum of 3 rows)/d(bias) = 3 on the ranks that used the head, averaged over all ranks
        np.testing.assert_allclose(inner.a.bias.grad.numpy(), np.full(2, 3.0 / world))
        expect_b = 3.0 * (world - 1) / world
        np.testing.assert_allclose(inner.b.bias.grad.numpy(), np.full(2, expect_b))


def stuck_peer(rank: int, world: int) -> None:
    if rank == 1:
        time.sleep(30)
    dist.all_reduce(pe.ones(4))


def dead_peer(rank: int, world: int) -> None:
    if rank == 1:
        raise ValueError("rank 1 fails on purpose")
    dist.all_reduce(pe.ones(4))


def killed_peer(rank: int, world: int) -> None:
    import os
    import signal

    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(pe.ones(4))


if __name__ == "__main__":
    name = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
    dist.init_process_group("mpi", timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    globals()[name](rank, world)
    dist.barrier()
    print(f"rank {rank} ok", flush=True)
    dist.destroy_process_group()
