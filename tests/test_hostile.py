"""Issue 11's reproducers: hostile arguments that corrupted the heap, hung, aborted or were
accepted silently. Each must now compute PyTorch's result or raise a clear Python exception.
Calls that used to crash the interpreter run in a child process, so a regression fails this
test instead of killing the test run."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from pyrun import run_python

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.backend import numpy_ref
from pyengine.backend.device import _cpu

inf, nan = float("inf"), float("nan")


def run_isolated(code: str, timeout: float = 60) -> str:
    """Runs code in a child process; returns its stdout; fails on a crash or a hang."""
    src = "import numpy as np, pyengine as pe\nimport pyengine.nn.functional as F\n" + code
    try:
        r = run_python(["-c", src], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: {code}")
    assert r.returncode == 0, f"exit {r.returncode}: {code}\n{r.stderr[-2000:]}"
    return r.stdout


def conv_reference(torch, fn, x, w, **kw):
    xt = torch.tensor(x.numpy(), dtype=torch.float64)
    wt = torch.tensor(w.detach().numpy(), dtype=torch.float64, requires_grad=True)
    y = getattr(torch.nn.functional, fn)(xt, wt, **kw)
    y.sum().backward()
    return y.detach().numpy(), wt.grad.numpy()


# ---------------------------------------------------------------- findings 1-3: conv
@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv_transpose_huge_padding_dilation_backward(torch, algo):
    # valid_range() returned a first output past the row; im2col zero-filled up to it.
    x = pe.randn(1, 1, 1, 1)
    w = pe.randn(1, 1, 3, 3, requires_grad=True)
    y = F.conv_transpose2d(x, w, padding=1000, dilation=1000, algo=algo)
    y.sum().backward()
    ref_y, ref_gw = conv_reference(torch, "conv_transpose2d", x, w, padding=1000, dilation=1000)
    np.testing.assert_allclose(y.detach().numpy(), ref_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), ref_gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv_large_padding_dilation_backward(torch, algo):
    x = pe.randn(1, 1, 1, 1)
    w = pe.randn(1, 1, 3, 3, requires_grad=True)
    y = F.conv2d(x, w, padding=40, dilation=40, algo=algo)
    y.sum().backward()
    ref_y, ref_gw = conv_reference(torch, "conv2d", x, w, padding=40, dilation=40)
    np.testing.assert_allclose(y.detach().numpy(), ref_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), ref_gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv_same_padding_overflowing_dilation_raises(algo):
    with pytest.raises(ValueError, match="overflow"):
        F.conv2d(
            pe.randn(1, 1, 4, 4), pe.randn(1, 1, 3, 3), padding="same", dilation=2**61, algo=algo
        )


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv_same_padding_huge_dilation_computes(torch, algo):
    # Only the centre tap lands inside: the result is x * w[1, 1]; no padded copy is built.
    x, w = pe.randn(1, 1, 4, 4), pe.randn(1, 1, 3, 3)
    y = F.conv2d(x, w, padding="same", dilation=2**30, algo=algo)
    ref = torch.nn.functional.conv2d(
        torch.tensor(x.numpy()), torch.tensor(w.numpy()), padding="same", dilation=2**30
    )
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-6)


def test_conv_empty_batch_huge_padding_does_not_abort():
    y = F.conv2d(pe.zeros(0, 1, 8, 8), pe.zeros(1, 1, 3, 3), padding=100000)
    assert y.shape == (0, 1, 200006, 200006)


def test_conv_allocation_failure_raises_memory_error():
    # Under an address-space limit, the kernels' scratch cannot be allocated: MemoryError,
    # not std::terminate from inside an OpenMP region.
    # Many input channels, one output channel: the direct kernel's padded copy of the input
    # (68 MB) is its largest allocation; the limit leaves 40 MB above what the process maps.
    # (im2col packs its columns lazily and may well succeed.)
    out = run_isolated(
        "import re, resource\n"
        "x, w = pe.zeros(1, 256, 256, 256), pe.zeros(1, 256, 3, 3)\n"
        "F.conv2d(pe.randn(2, 4, 8, 8), pe.randn(4, 4, 3, 3), padding=1)  # start the threads\n"
        "vm = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "resource.setrlimit(resource.RLIMIT_AS, ((vm << 10) + (40 << 20),) * 2)\n"
        "for algo in ('direct', 'im2col'):\n"
        "    try:\n"
        "        F.conv2d(x, w, padding=1, algo=algo)\n"
        "        print(algo, 'ok')\n"
        "    except MemoryError:\n"
        "        print(algo, 'MemoryError')\n"
    )
    lines = out.splitlines()
    assert lines[0] == "direct MemoryError" and lines[1] in ("im2col ok", "im2col MemoryError")


def test_raw_conv_output_smaller_than_padding():
    # pad_planes copied a negative number of bytes when the padding exceeded the padded plane.
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    y = np.full((1, 1, 1, 1), 7, np.float32)
    _cpu.conv2d_direct_forward(x, w, None, y, 1, 1, 1000, 1000, 1, 1, 1)
    assert y[0, 0, 0, 0] == 0


def test_raw_conv_dilation_near_int64_max_raises():
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    y = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="overflow"):
        _cpu.conv2d_direct_forward(x, w, None, y, 1, 1, 2**62, 2**62, 2**62, 2**62, 1)


# ---------------------------------------------------------------- finding 4: pooling
def test_max_pool_huge_kernel_rejected_like_pytorch(torch):
    x = pe.zeros(1, 1, 4, 4)
    for call in (
        lambda m, x: m.max_pool2d(x, kernel_size=2**40, padding=2**39, stride=1),
        lambda m, x: m.avg_pool2d(x, kernel_size=2**40, padding=2**39, stride=1),
    ):
        with pytest.raises(RuntimeError, match="overflow"):
            call(torch.nn.functional, torch.zeros(1, 1, 4, 4))
        with pytest.raises(RuntimeError, match="overflow"):
            call(F, x)


def pool_args(k):
    return (k, k), (1, 1), (k // 2, k // 2)


@pytest.mark.parametrize("twin", [False, True])
def test_max_pool_kernel_huge_kernel_returns(twin):
    # The kernels themselves take int64 sizes: the window start is found in closed form, not by
    # stepping through 2**39 padding positions.
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    y, idx = np.zeros((1, 1, 5, 5), np.float32), np.zeros((1, 1, 5, 5), np.int64)
    fn = numpy_ref.maxpool2d_forward if twin else _cpu.maxpool2d_forward
    fn(x, y, idx, *pool_args(2**40), (1, 1), False)
    assert np.all(y == x.max()) and np.all(idx == x.argmax())


@pytest.mark.parametrize("twin", [False, True])
def test_avg_pool_kernel_huge_kernel_is_finite(twin):
    # The padded window area 2**80 overflowed int64; counted in floating point it is exact.
    x, y = np.ones((1, 1, 4, 4), np.float32), np.zeros((1, 1, 5, 5), np.float32)
    fn = numpy_ref.avgpool2d_forward if twin else _cpu.avgpool2d_forward
    fn(x, y, *pool_args(2**40), False, True, 0)
    np.testing.assert_allclose(y, 16 / 2.0**80, rtol=1e-6)


def test_pool_overflowing_sizes_raise():
    with pytest.raises(RuntimeError, match="overflow"):
        F.max_pool2d(pe.zeros(1, 1, 4, 4), kernel_size=3, dilation=2**62)
    with pytest.raises(ValueError, match="overflow"):
        _cpu.maxpool2d_forward(
            np.zeros((1, 1, 4, 4), np.float32),
            np.zeros((1, 1, 4, 4), np.float32),
            np.zeros((1, 1, 4, 4), np.int64),
            (3, 3),
            (1, 1),
            (1, 1),
            (2**62, 2**62),
            False,
        )


# ---------------------------------------------------------------- finding 6: non-finite twins
def test_twins_propagate_non_finite_like_kernels(torch):
    a = np.array([[[[inf, 1, 1, inf], [1, nan, 1, 1]]]])
    t = torch.tensor(a)
    cases = [
        (
            lambda m: F.pad(m, (1, 1, 1, 1), value=2.0),
            lambda: torch.nn.functional.pad(t, (1,) * 4, value=2.0),
        ),
    ]
    for mode in ("reflect", "replicate"):
        cases.append(
            (
                lambda m, mode=mode: F.pad(m, (1, 1, 1, 1), mode=mode),
                lambda mode=mode: torch.nn.functional.pad(t, (1,) * 4, mode=mode),
            )
        )
    for mode, kw in (("nearest", {}), ("bilinear", {}), ("bilinear", {"align_corners": True})):
        cases.append(
            (
                lambda m, mode=mode, kw=kw: F.interpolate(m, scale_factor=2, mode=mode, **kw),
                lambda mode=mode, kw=kw: torch.nn.functional.interpolate(
                    t, scale_factor=2, mode=mode, **kw
                ),
            )
        )
    for ours, theirs in cases:
        ref = theirs().numpy()
        for dtype in (pe.float32, pe.float64):
            got = ours(pe.tensor(a, dtype=dtype)).numpy()
            np.testing.assert_array_equal(got, ref.astype(got.dtype))


# ---------------------------------------------------------------- findings 7-8: exceptions
def test_batch_norm_empty_rows_returns_at_once():
    out = run_isolated(
        "y = F.batch_norm(pe.zeros(2**40, 3, 0), pe.zeros(3), pe.ones(3), training=False)\n"
        "print(y.shape)",
        timeout=30,
    )
    assert out.strip() == "(1099511627776, 3, 0)"


BAD_CALLS = [
    (TypeError, lambda: pe.ones(3) + None),
    (TypeError, lambda: None + pe.ones(3)),
    (TypeError, lambda: pe.randn(3, 4) @ 2.0),
    (TypeError, lambda: F.conv2d(pe.randn(1, 1, 4, 4), pe.randn(1, 1, 3, 3), [0.0])),
    (TypeError, lambda: F.cross_entropy(pe.randn(2, 3), [0, 1])),
    (TypeError, lambda: pe.stack([pe.ones(3), np.ones(3)])),
    (TypeError, lambda: pe.cat([pe.ones(3), np.ones(3)])),
    (IndexError, lambda: pe.ones(3)[2**63]),
    (IndexError, lambda: pe.ones(3).__setitem__(2**63, 1.0)),
    (ValueError, lambda: pe.arange(0, 10, 0)),
    (TypeError, lambda: F.interpolate(pe.ones(1, 1, 2, 2), scale_factor="2")),
    (
        TypeError,
        lambda: F.interpolate(
            pe.ones(1, 1, 2, 2), scale_factor=2, mode="bilinear", align_corners="yes"
        ),
    ),
    (RuntimeError, lambda: pe.ones(2, 3, 4).flatten(1, 0)),
    (TypeError, lambda: F.avg_pool2d(pe.ones(1, 1, 4, 4), 2, divisor_override=True)),
    (TypeError, lambda: pe.rand(3, dtype=pe.int64)),
    (RuntimeError, lambda: F.softmax(pe.tensor([1, 2, 3]), dim=0)),
    (RuntimeError, lambda: F.log_softmax(pe.tensor([1, 2, 3]), dim=0)),
    (ValueError, lambda: pe.set_num_threads(5000)),
    (ValueError, lambda: pe.set_num_threads(0)),
]


@pytest.mark.parametrize("exc,call", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_hostile_calls_raise_pytorch_exception_types(exc, call):
    with pytest.raises(exc):
        call()


# ---------------------------------------------------------------- finding 9: threads
def test_set_num_threads_is_process_wide():
    out = run_isolated(
        "import threading\n"
        "pe.set_num_threads(1)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(pe.get_num_threads()))\n"
        "t.start(); t.join()\n"
        "pe.set_num_threads(3)\n"
        "t = threading.Thread(target=lambda: seen.append(pe.get_num_threads()))\n"
        "t.start(); t.join()\n"
        "print(seen)"
    )
    assert out.strip() == "[1, 3]"


# ---------------------------------------------------------------- raw bindings
def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


RAW_BAD = [
    lambda: _cpu.softmax_forward(z(0), z(0), 2**62, 4, 1, False),
    lambda: _cpu.softmax_forward(z(8), z(8), 2**62, 2**2, 2**62, False),
    lambda: _cpu.max_reduce_backward(z(4), np.zeros(4, np.int64), z(4), 2**62, 4, 2**62),
    lambda: _cpu.max_reduce(z(4), z(4), np.zeros(4, np.int64), -1, -4, 1),
    lambda: _cpu.upsample_bilinear2d_backward(z(1, 1, 4, 4), z(1, 1, 2, 2), False, 1e-300, 1e-300),
    lambda: _cpu.upsample_nearest2d_forward(z(1, 1, 2, 2), z(1, 1, 4, 4), nan, 2.0),
    lambda: _cpu.pad2d_forward(z(1, 1, 2, 2), z(1, 1, 2, 2), (2**63 - 1, 1, 0, 0), "constant", 0.0),
]


@pytest.mark.parametrize("call", RAW_BAD, ids=[str(i) for i in range(len(RAW_BAD))])
def test_raw_bindings_reject_hostile_sizes(call):
    with pytest.raises((ValueError, TypeError)):
        call()


def test_raw_upsample_tiny_scale_stays_in_bounds():
    # 1/1e-300 overflowed the source coordinate; indices are now clamped to the last pixel
    # (or the scale rejected), never cast from inf.
    gy, gx = np.ones((1, 1, 4, 4), np.float32), np.zeros((1, 1, 2, 2), np.float32)
    try:
        _cpu.upsample_nearest2d_backward(gy, gx, 1e-30, 1e-30)
    except ValueError:
        return
    assert gx.sum() == 16


def test_gemm_rejects_aliased_output():
    a = np.eye(4, dtype=np.float32)
    b = np.full((4, 4), 2, np.float32)
    with pytest.raises(ValueError, match="share memory"):
        _cpu.gemm(a, b, a)
    with pytest.raises(ValueError, match="share memory"):
        _cpu.gemm(a, b, b)


def test_load_rejects_hostile_checkpoints(tmp_path):
    import json
    import zipfile

    meta = "__pyengine_meta__"
    good = tmp_path / "good.npz"
    pe.save({"w": pe.ones(2)}, good)
    assert meta in np.load(good).files
    lst = tmp_path / "list.npz"
    np.savez(lst, **{meta: np.asarray(json.dumps([1, 2]))})
    with pytest.raises(ValueError, match="damaged"):
        pe.load(lst)
    # an .npy header claiming 2**60 float32 elements, followed by 8 bytes of data
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + str(2**60) + ",), }"
    header = header.ljust(118) + "\n"
    big = tmp_path / "big.npz"
    with zipfile.ZipFile(big, "w") as zf:
        with zf.open(meta + ".npy", "w") as f:
            np.lib.format.write_array(f, np.asarray(json.dumps({"kinds": {"w": "tensor"}})))
        magic = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
        zf.writestr("w.npy", magic + header.encode() + bytes(8))
    with pytest.raises(ValueError, match="damaged"):
        pe.load(big)


def test_empty_outputs_with_huge_dims_allocate_nothing():
    # Found by the fuzz suite under ASan: per-axis tables and per-thread scratch were sized by a
    # huge dim of an empty tensor (16 GB, or 4 TB inside an OpenMP region: std::terminate).
    out = run_isolated(
        "import re, resource\n"
        "from pyengine.backend.device import _cpu\n"
        "vm = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "resource.setrlimit(resource.RLIMIT_AS, ((vm << 10) + (2 << 30),) * 2)\n"
        "print(tuple(F.pad(pe.ones(1, 1, 1), (0, -1, 2**31, 0)).shape))\n"
        "print(tuple(F.pad(pe.ones(0, 1, 1), (0, 0, 0, 2**31)).shape))\n"
        "x, y = np.zeros((0, 1, 1, 2**40), np.float32), np.zeros((0, 1, 1, 2**40), np.float32)\n"
        "_cpu.maxpool2d_forward(x, y, np.zeros(y.shape, np.int64), (1, 1), (1, 1), (0, 0), "
        "(1, 1), False)\n"
        "_cpu.upsample_bilinear2d_forward(x, y, False, 0.0, 0.0)\n"
        "print('ok')\n"
    )
    assert out.split("\n")[:3] == ["(1, 2147483649, 0)", "(0, 2147483649, 1)", "ok"]
