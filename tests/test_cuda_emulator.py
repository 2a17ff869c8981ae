"""The CPU emulator of the CUDA device (cuda/emulator/, built with PYENGINE_CUDA_EMULATOR=ON in
CI): it must fail kernels the way a GPU (or compute-sanitizer) would, or the emulated suite proves
nothing. Skipped in every other build."""

import numpy as np
import pytest

import pyengine as pe

try:
    from pyengine import _cuda

    emu = _cuda.emulator
except (ImportError, AttributeError):
    emu = None

pytestmark = pytest.mark.skipif(emu is None, reason="not the emulated CUDA build")


def test_missing_syncthreads_is_visible():
    ok = emu.neighbour_exchange(256, True).numpy()
    np.testing.assert_array_equal(ok, (np.arange(256) + 1) % 256 + 1)
    racy = emu.neighbour_exchange(256, False).numpy()
    assert not np.array_equal(racy, ok)  # neighbours had not written their slot yet


def test_warp_shuffle_reduction():
    x = np.arange(32, dtype=np.float32)
    np.testing.assert_array_equal(emu.warp_sum(_cuda.from_numpy(x)).numpy(), np.full(32, 496.0))


def test_divergent_barriers_are_reported_not_hung():
    with pytest.raises(RuntimeError, match="deadlock"):
        emu.divergent_barrier()


@pytest.mark.parametrize("index", [10, 11, 200, 5000, -1, -300, 1 << 30])
def test_out_of_bounds_global_access_is_caught(index):
    a = _cuda.from_numpy(np.zeros(10, np.float32))
    emu.write_at(a, 9, 1.0)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        emu.write_at(a, index, 1.0)
    np.testing.assert_array_equal(a.numpy()[-1], 1.0)  # the device is usable afterwards


@pytest.mark.parametrize(
    "grid, block, smem, match",
    [
        ((1, 1, 1), (1025, 1, 1), 0, "invalid configuration"),
        ((1, 1, 1), (32, 32, 2), 0, "invalid configuration"),
        ((1, 1, 1), (1, 1, 65), 0, "invalid configuration"),
        ((1, 65536, 1), (32, 1, 1), 0, "invalid configuration"),
        ((0, 1, 1), (32, 1, 1), 0, "invalid configuration"),
        ((1, 1, 1), (32, 1, 1), 48 * 1024 + 1, "invalid argument"),
    ],
)
def test_launch_configuration_errors_raise_like_nvcc(grid, block, smem, match):
    with pytest.raises(RuntimeError, match=f"CUDA error in empty_kernel: {match}"):
        emu.launch_empty(grid, block, smem)
    emu.launch_empty((3, 2, 1), (1024, 1, 1), 48 * 1024)  # the limits themselves are fine


def test_oom_retry_releases_the_cache_then_raises():
    pe.cuda.empty_cache()
    t = pe.zeros(1000, device="cuda")
    del t  # cached: one block reserved, none allocated
    reserved = _cuda.memory_reserved()
    assert reserved > 0
    emu.fail_next_mallocs(1)  # the first cudaMalloc fails; the retry after emptying succeeds
    u = pe.ones(5000, device="cuda")
    assert _cuda.memory_reserved() < reserved + u._data.nbytes * 1.3  # the cached block went back
    assert float(u.sum()) == 5000.0
    emu.fail_next_mallocs(2)  # the retry fails too
    with pytest.raises(MemoryError, match="out of memory"):
        pe.ones(7000, device="cuda")
    emu.fail_next_mallocs(0)


def test_memory_limit_is_the_device_size():
    limit = emu.memory_limit()
    try:
        emu.set_memory_limit(1 << 20)
        pe.cuda.empty_cache()
        with pytest.raises(MemoryError, match="out of memory"):
            _cuda.empty((1 << 19,), np.float32)  # 2 MiB
    finally:
        emu.set_memory_limit(limit)
