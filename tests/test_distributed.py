"""pyengine.distributed, DistributedDataParallel, SyncBatchNorm and DistributedSampler.

The multi-process checks launch tests/distributed_worker.py through ``mpiexec -n 2`` (the MPICH of
the ``mpi`` extra; they skip when mpi4py is not installed, .ci/mpi.sh installs it and runs them).
The rest runs in this process.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pyengine as pe
import pyengine.distributed as dist
from pyengine import nn
from pyengine.data import DataLoader, DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(pe.__file__))


def mpiexec() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return None
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    mpiexec() is None, reason='needs mpi4py and mpiexec: pip install "pyengine[mpi]"'
)


def launch(args: list[str], n: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "PYENGINE_PROGRESS": "0"}
    return subprocess.run(
        [mpiexec(), "-n", str(n), sys.executable, *args],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker(name: str, *extra: str) -> subprocess.CompletedProcess:
    return launch([os.path.join(HERE, "distributed_worker.py"), name, *extra])


@needs_mpi
@pytest.mark.parametrize(
    "scenario",
    [
        "collectives",
        "ddp_matches_one_process",
        "buckets_start_during_backward",
        "no_sync_accumulates",
        "unused_parameters",
    ],
)
def test_two_ranks(scenario):
    r = worker(scenario)
    assert r.returncode == 0, r.stdout + r.stderr
    # The two ranks' lines may interleave on the shared stdout: count them instead of splitting.
    assert r.stdout.count("rank 0 ok") == 1 and r.stdout.count("rank 1 ok") == 1, r.stdout


@needs_mpi
@pytest.mark.parametrize(
    "scenario, message",
    [
        ("stuck_peer", "timed out after 2 s"),  # the watchdog of rank 0's wait
        ("dead_peer", "rank 1 fails on purpose"),  # an exception aborts every rank
        ("killed_peer", "BAD TERMINATION"),  # mpiexec cleans up after a SIGKILL
    ],
)
def test_failing_rank_stops_the_job(scenario, message):
    t0 = time.monotonic()
    r = worker(scenario, "2")
    assert r.returncode != 0
    assert message in r.stdout + r.stderr, r.stdout + r.stderr
    assert time.monotonic() - t0 < 25  # the stuck peer sleeps 30 s: nobody waited for it


@needs_mpi
def test_train_dncnn_two_ranks_then_resume_on_one(tmp_path):
    out = tmp_path / "run"
    small = ["--steps", "2", "--batch", "4", "--patch", "24", "--depth", "3", "--channels", "8"]
    r = launch(["-m", "pyengine", "train", "dncnn", "--epochs", "1", "--out", str(out), *small])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("epoch 1/1") == 1, r.stdout  # rank 0 alone reports
    assert "2 processes" in r.stdout
    assert (out / "checkpoint.npz").is_file()
    r = subprocess.run(
        [sys.executable, "-m", "pyengine", "train", "dncnn", "--epochs", "2", "--resume"]
        + ["--out", str(out)],
        env={**os.environ, "PYTHONPATH": ROOT, "PYENGINE_PROGRESS": "0"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "epoch 2/2" in r.stdout


@needs_mpi
def test_train_rejects_batch_not_divisible_by_ranks(tmp_path):
    r = launch(["-m", "pyengine", "train", "dncnn", "--batch", "3", "--out", str(tmp_path / "x")])
    assert r.returncode != 0
    assert "--batch 3 is not a multiple of the 2 processes" in r.stderr


# ---------------------------------------------------------------------- in this process
def test_without_mpi4py_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(RuntimeError, match=r'pip install "pyengine\[mpi\]"'):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_uninitialised_group_raises():
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="backend"):
        dist.init_process_group("nccl")


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (4, 4, False)])
def test_distributed_sampler_shards(n, replicas, drop_last):
    ds = list(range(n))
    shards = [
        DistributedSampler(ds, replicas, r, shuffle=True, seed=5, drop_last=drop_last)
        for r in range(replicas)
    ]
    for s in shards:
        s.set_epoch(3)
    got = [list(s) for s in shards]
    assert len({len(g) for g in got}) == 1 and len(got[0]) == len(shards[0])
    flat = sorted(i for g in got for i in g)
    if drop_last:
        assert len(flat) == n // replicas * replicas and len(set(flat)) == len(flat)
    else:
        assert set(flat) == set(range(n)) and len(flat) == -(-n // replicas) * replicas
    again = DistributedSampler(ds, replicas, 0, shuffle=True, seed=5, drop_last=drop_last)
    again.set_epoch(3)
    assert list(again) == got[0]  # the same on every rank for one epoch
    again.set_epoch(4)
    assert list(again) != got[0] or n <= replicas


def test_distributed_sampler_bad_rank():
    with pytest.raises(ValueError, match="Invalid rank"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


def test_dataloader_with_sampler_gives_the_global_batch_in_shards():
    data = np.arange(12, dtype=np.float32)
    full = [b.numpy().tolist() for b in DataLoader(data, 4, drop_last=True)]
    shards = []
    for r in range(2):
        s = DistributedSampler(data, 2, r, shuffle=False)
        shards.append([b.numpy().tolist() for b in DataLoader(data, 2, sampler=s)])
    for k, batch in enumerate(full):
        assert sorted(shards[0][k] + shards[1][k]) == batch
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(data, 2, shuffle=True, sampler=s)


def test_post_accumulate_grad_hook():
    w = pe.randn(3, requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    ((w * 2).sum() + (w * w).sum()).backward()  # w used twice: one call, with the total
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 + 2 * w.detach().numpy(), rtol=1e-6)
    (w * 3).sum().backward()  # accumulates into .grad, then the hook sees the sum
    np.testing.assert_allclose(seen[1], 5 + 2 * w.detach().numpy(), rtol=1e-6)
    handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)


def test_sync_batchnorm_alone_is_batchnorm(rng):
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert sync is model
    assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][0], nn.SyncBatchNorm)
    bn = nn.BatchNorm2d(4, momentum=None).eval()
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert isinstance(converted, nn.SyncBatchNorm) and not converted.training
    assert converted.running_mean is bn.running_mean and converted.momentum is None
    ref = nn.BatchNorm2d(4)
    ref.load_state_dict(model[1].state_dict())
    x = pe.from_numpy(rng.standard_normal((3, 4, 5, 5)).astype(np.float32))
    np.testing.assert_allclose(model[1](x).detach().numpy(), ref(x).detach().numpy(), rtol=1e-6)


def test_leaf_gradients_are_final_right_after_their_layer():
    # backward reaches each parameter straight after its layer (last layer first, bias before
    # weight), not at the end of the pass: what lets DDP send gradients while backward runs
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    names = {id(p): n for n, p in model.named_parameters()}
    order = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda t: order.append(names[id(t)]))
    model(pe.randn(5, 3)).sum().backward()
    assert order == ["2.bias", "2.weight", "0.bias", "0.weight"]
