"""The CUDA device: clean behaviour without a GPU, CUDABackend's layout logic on a NumPy stand-in
of the extension (runs everywhere), and GPU-only checks of the real extension (skipped without
one). Kernel-level correctness on the GPU is covered by the ops tests' ``device`` fixture."""

import shutil

import numpy as np
import pytest
from fake_cuda import FakeCuda
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.backend import device as device_mod
from pyengine.backend.cuda_backend import CUDABackend

gpu = pytest.mark.skipif(not pe.cuda.is_available(), reason="no CUDA device available")


# ------------------------------------------------------------------ without a GPU
@pytest.mark.skipif(pe.cuda.is_available(), reason="a GPU is present")
def test_unavailable_is_clean():
    assert pe.cuda.is_available() is False
    assert pe.cuda.device_count() == 0
    assert pe.cuda.unavailable_reason()
    with pytest.raises(RuntimeError, match="cuda"):
        pe.randn(2, 3).to("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pe.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pe.cuda.memory_allocated()


def test_extension_built_or_reason_given():
    if pe.cuda.is_built():
        from pyengine import _cuda

        assert _cuda.device_count() >= 0  # never raises, even without a driver
        assert pe.cuda.unavailable_reason() in (
            "",
            "the CUDA extension is built but no GPU is visible",
        )
    else:
        if shutil.which("nvcc") is None:
            pytest.skip("nvcc not installed: the CPU-only build is expected")
        assert "not built" in pe.cuda.unavailable_reason()


# ------------------------------------------------------------------ CUDABackend on a stand-in
@pytest.fixture
def fake_cuda(monkeypatch):
    """Route device 'cuda' to CUDABackend over the NumPy stand-in of the extension."""
    monkeypatch.setitem(device_mod._backends, "cuda", CUDABackend(FakeCuda()))
    monkeypatch.setattr(pe.cuda, "is_available", lambda: True)
    return device_mod._backends["cuda"]


INDEXES = [
    1,
    -1,
    np.s_[1:, ::2],
    np.s_[::-1],
    np.s_[..., 1],
    np.s_[None, 0],
    np.s_[:, None, 1:3],
    np.s_[1, 2],
    np.array([2, 0, 2]),
    np.s_[[0, 1], [1, 2]],
    np.s_[:, [3, 0]],
    np.array([True, False, True, False]),
]


@pytest.mark.parametrize("index", INDEXES, ids=range(len(INDEXES)))
def test_getitem_setitem_index_add_match_numpy(fake_cuda, index, rng):
    be = fake_cuda
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    a = be.from_numpy(x)
    np.testing.assert_array_equal(be.to_numpy(be.getitem(a, index)), x[index])
    ref = x.copy()
    ref[index] = 7.0
    be.setitem(a, index, 7.0)
    np.testing.assert_array_equal(be.to_numpy(a), ref)
    vals = rng.standard_normal(x[index].shape).astype(np.float32)
    ref[index] = vals
    be.setitem(a, index, be.from_numpy(vals))
    np.testing.assert_array_equal(be.to_numpy(a), ref)
    g = np.zeros_like(x)
    out = be.full(x.shape, 0.0, np.float32)
    np.add.at(g, index, vals)
    be.index_add(out, index, be.from_numpy(vals))
    np.testing.assert_allclose(be.to_numpy(out), g)


def test_index_add_sums_duplicates(fake_cuda):
    be = fake_cuda
    out = be.full((3,), 0.0, np.float32)
    be.index_add(out, (np.array([0, 2, 0, 0]),), be.from_numpy(np.ones(4, np.float32)))
    np.testing.assert_array_equal(be.to_numpy(out), [3, 0, 1])


def test_layout_ops_match_cpu(fake_cuda, rng):
    be, cpu = fake_cuda, device_mod.CPUBackend()
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = rng.standard_normal((2, 1, 4)).astype(np.float32)
    a, b = be.from_numpy(x), be.from_numpy(y)
    np.testing.assert_array_equal(be.to_numpy(be.permute(a, (2, 0, 1))), cpu.permute(x, (2, 0, 1)))
    np.testing.assert_array_equal(be.to_numpy(be.cat([a, b], 1)), cpu.cat([x, y], 1))
    np.testing.assert_array_equal(be.to_numpy(be.cat([a, a], 2)), cpu.cat([x, x], 2))
    np.testing.assert_array_equal(be.to_numpy(be.reshape(a, (6, 4))), x.reshape(6, 4))
    np.testing.assert_array_equal(be.to_numpy(be.astype(a, np.int64)), x.astype(np.int64))
    np.testing.assert_array_equal(be.to_numpy(be.copy(a)), x)
    c = be.full((2, 3, 4), 0.0, np.float32)
    be.copy_(c, b)  # broadcasting copy
    np.testing.assert_array_equal(be.to_numpy(c), np.broadcast_to(y, x.shape))
    assert be.to_numpy(be.scalar(2.5, np.float32)) == np.float32(2.5)
    with pytest.raises(ValueError, match="broadcast"):
        be.setitem(c, Ellipsis, be.from_numpy(np.ones((3, 3), np.float32)))
    with pytest.raises(IndexError):
        be.getitem(a, 5)


def test_ops_and_autograd_through_backend(fake_cuda, rng):
    x = rng.standard_normal((6, 5))
    w = rng.standard_normal((3, 5))
    b = rng.standard_normal(3)
    check_op(lambda x, w, b: F.linear(x, w, b).relu(), [x, w, b], device="cuda")
    check_op(lambda x: x[1:, ::2].sum(0) * 2.0, [x], device="cuda")
    check_op(lambda x, w: pe.cat([x, w], 0).permute(1, 0).softmax(1), [x, w], device="cuda")
    check_op(lambda x: x.max(1).values + x[[0, 0, 2]].mean(), [x], device="cuda")
    check_op(lambda x: (x.reshape(3, 2, 5) @ x.reshape(3, 5, 2)).exp(), [x], device="cuda")


def test_transfers_and_random(fake_cuda, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = pe.tensor(x).to("cuda")
    assert t.is_cuda and t.device == "cuda:0"
    np.testing.assert_array_equal(t.cpu().numpy(), x)
    with pytest.raises(RuntimeError, match="same device"):
        t + pe.tensor(x)
    be = fake_cuda
    r1 = be.to_numpy(be.random(np.random.default_rng(3), "normal", (100,), np.float32))
    r2 = be.to_numpy(be.random(np.random.default_rng(3), "normal", (100,), np.float32))
    np.testing.assert_array_equal(r1, r2)


# ------------------------------------------------------------------ the real extension on a GPU
@gpu
def test_allocator_stats_and_cache():
    pe.cuda.synchronize()
    pe.cuda.empty_cache()
    base = pe.cuda.memory_allocated()
    t = pe.zeros(1024, 1024, device="cuda")
    assert pe.cuda.memory_allocated() >= base + 4 * 1024 * 1024
    assert pe.cuda.max_memory_allocated() >= pe.cuda.memory_allocated()
    del t
    assert pe.cuda.memory_allocated() == base
    from pyengine import _cuda

    reserved = _cuda.memory_reserved()
    pe.zeros(1024, 1024, device="cuda")  # served from the cache: nothing new reserved
    assert _cuda.memory_reserved() == reserved
    pe.cuda.empty_cache()
    assert _cuda.memory_reserved() <= reserved


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_])
def test_transfer_roundtrip(dtype, rng):
    x = (rng.standard_normal((3, 1000, 7)) * 100).astype(dtype)
    t = pe.tensor(x, device="cuda")
    np.testing.assert_array_equal(t.cpu().numpy(), x)
    big = rng.standard_normal(3_000_000).astype(np.float32)  # several staging chunks
    np.testing.assert_array_equal(pe.tensor(big, device="cuda").cpu().numpy(), big)


@gpu
def test_mixed_device_error(rng):
    a = pe.randn(3, device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        a + pe.randn(3)
    from pyengine import _cuda

    with pytest.raises(TypeError):
        _cuda.axpby(np.ones(3, np.float32), a._data, 1.0, 1.0)


@gpu
def test_out_of_memory_is_catchable():
    from pyengine import _cuda

    with pytest.raises((MemoryError, RuntimeError), match="out of memory"):
        _cuda.empty((1 << 46,), np.float32)  # 256 TiB
    t = pe.ones(10, device="cuda")  # the allocator still works afterwards
    assert float(t.sum()) == 10.0


@gpu
def test_kernel_errors_are_value_errors():
    from pyengine import _cuda

    a = _cuda.empty((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _cuda.gemm(a, a, _cuda.empty((3, 3), np.float32))
    t = _cuda.from_numpy(np.array([0, 5], np.int64))
    with pytest.raises(ValueError, match="out of bounds"):
        _cuda.nll_forward(_cuda.empty((2, 3), np.float32), t, _cuda.empty((2,), np.float32))


@gpu
@pytest.mark.parametrize("shape", [(1, 1, 1), (67, 45, 33), (128, 256, 64), (300, 129, 257)])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_shapes_and_tf32(shape, ta, tb, rng):
    from pyengine import _cuda

    M, N, K = shape
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
    c = _cuda.empty((M, N), np.float32)
    _cuda.gemm(_cuda.from_numpy(a), _cuda.from_numpy(b), c, ta, tb)
    np.testing.assert_allclose(c.numpy(), ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))
    _cuda.set_allow_tf32(True)
    try:
        _cuda.gemm(_cuda.from_numpy(a), _cuda.from_numpy(b), c, ta, tb)
    finally:
        _cuda.set_allow_tf32(False)
    np.testing.assert_allclose(c.numpy(), ref, rtol=2e-2, atol=2e-2 * np.sqrt(K))


@gpu
def test_random_is_seeded_and_distributed():
    pe.manual_seed(0)
    be = device_mod.backend(pe.device("cuda"))
    gen = np.random.default_rng(5)
    r = be.to_numpy(be.random(gen, "normal", (1 << 20,), np.float32))
    assert abs(r.mean()) < 0.01 and abs(r.std() - 1) < 0.01
    u = be.to_numpy(be.random(gen, "uniform", (1 << 20,), np.float32))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


# ------------------------------------------------------------------ whole models and optimisers
def _step_both(make_model, make_opt, x, target, steps=2):
    """The same model trained on cpu and on cuda from the same weights: losses and parameters."""
    out = []
    for device in ("cpu", "cuda"):
        pe.manual_seed(0)
        model = make_model().to(device)
        opt = make_opt(model.parameters())
        xt, tt = pe.tensor(x, device=device), pe.tensor(target, device=device)
        losses = []
        for _ in range(steps):
            loss = F.mse_loss(model(xt), tt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        out.append((losses, [p.detach().cpu().numpy() for p in model.parameters()]))
    return out


@gpu
@pytest.mark.parametrize("arch", ["dncnn", "unet_transpose", "unet_upsample"])
def test_model_training_steps_match_cpu(arch, rng):
    from pyengine.models import DnCNN, UNet

    def make():
        if arch == "dncnn":
            return DnCNN(depth=4, channels=8)
        return UNet(1, 1, depth=2, base=4, up=arch.split("_")[1])

    def make_opt(params):
        return (
            pe.optim.Adam(params, lr=1e-2)
            if arch == "dncnn"
            else pe.optim.SGD(params, lr=0.05, momentum=0.9)
        )

    x = rng.standard_normal((2, 1, 12, 10)).astype(np.float32)
    target = rng.standard_normal((2, 1, 12, 10)).astype(np.float32)
    (cpu_losses, cpu_params), (gpu_losses, gpu_params) = _step_both(make, make_opt, x, target)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    for a, b in zip(gpu_params, cpu_params):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


OPTIM_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99))),
    ("Adam", dict(lr=0.1, betas=(0.5, 0.9), eps=1e-6, weight_decay=1e-2)),
]


@gpu
@pytest.mark.parametrize("name,kwargs", OPTIM_CASES)
def test_optimizer_kernels_match_cpu(name, kwargs):
    result = []
    for device in ("cpu", "cuda"):
        gen = np.random.default_rng(0)
        shapes = [(3, 4), (1000,)]  # the second spans several blocks
        params = [
            pe.nn.Parameter(pe.tensor(gen.standard_normal(s).astype(np.float32), device=device))
            for s in shapes
        ]
        opt = getattr(pe.optim, name)(params, **kwargs)
        for _ in range(4):
            for p in params:
                p.grad = pe.tensor(gen.standard_normal(p.shape).astype(np.float32), device=device)
            opt.step()
        result.append([p.detach().cpu().numpy() for p in params])
    for a, b in zip(*result):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@gpu
@pytest.mark.parametrize("seed", [0, 0x299F31D0A4093822])
def test_random_kernel_is_philox_random123(seed):
    """Element e of the uniform stream is word e % 4 of Philox4x32-10(counter e // 4, key seed),
    checked through the host build of the same function, itself pinned to Random123's vectors."""
    from pyengine import _cuda, _cuda_index

    n = 4 * 70 + 3  # a ragged last group
    out = _cuda.empty((n,), np.float32)
    _cuda.random(out, seed, False)
    words = [
        w for g in range(71) for w in _cuda_index.philox(g, 0, 0, 0, seed & 0xFFFFFFFF, seed >> 32)
    ]
    want = np.array([_cuda_index.uniform01(w) for w in words[:n]], np.float32)
    np.testing.assert_array_equal(out.numpy(), want)
