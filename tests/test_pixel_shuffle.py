"""Pixel shuffle / unshuffle (csrc/resample.cpp): the C++ kernels against the NumPy twin, the
twin's backward by gradcheck, and both against PyTorch."""

from pathlib import Path

import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck

ROWS = [
    # input shape, factor
    ((2, 8, 3, 5), 2),
    ((1, 18, 4, 2), 3),
    ((3, 4, 1, 1), 2),
    ((2, 5, 3, 3), 1),
    ((2, 2, 16, 3, 2), 4),  # extra leading dim: (*, C*r*r, H, W)
]


@pytest.mark.parametrize("shape,r", ROWS)
def test_shuffle_against_twin(device, rng, shape, r):
    x = rng.standard_normal(shape)
    # float32 vs the float64 twin: only the rounding of the input to float32 differs
    check_op(lambda t: F.pixel_shuffle(t, r), [x], device=device, atol=0, rtol=1e-7)
    y = rng.standard_normal(shape[:-3] + (shape[-3] // (r * r), shape[-2] * r, shape[-1] * r))
    check_op(lambda t: F.pixel_unshuffle(t, r), [y], device=device, atol=0, rtol=1e-7)


def test_known_layout():
    # y[0, 0, 2h + i, 2w + j] = x[0, 2i + j, h, w]
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2)
    for ref in (False, True):
        with pe.backend.device.use_reference(ref):
            y = F.pixel_shuffle(pe.tensor(x), 2).numpy()[0, 0]
            assert y.tolist() == [
                [0, 4, 1, 5],
                [8, 12, 9, 13],
                [2, 6, 3, 7],
                [10, 14, 11, 15],
            ]
            back = F.pixel_unshuffle(pe.tensor(y[None, None]), 2).numpy()
            assert back.tolist() == x.tolist()


def test_gradcheck_twin(rng):
    x = pe.tensor(rng.standard_normal((1, 9, 2, 3)), dtype="float64", requires_grad=True)
    w = pe.tensor(rng.standard_normal((1, 1, 6, 9)), dtype="float64")
    assert gradcheck(lambda t: F.pixel_shuffle(t, 3) * w, [x])
    y = pe.tensor(rng.standard_normal((1, 2, 4, 6)), dtype="float64", requires_grad=True)
    v = pe.tensor(rng.standard_normal((1, 8, 2, 3)), dtype="float64")
    assert gradcheck(lambda t: F.pixel_unshuffle(t, 2) * v, [y])


@pytest.mark.parametrize("shape,r", ROWS)
def test_against_torch(torch, rng, shape, r):
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    xo = pe.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pixel_shuffle(xt, r)
    yo = F.pixel_shuffle(xo, r)
    np.testing.assert_array_equal(yo.detach().numpy(), yt.detach().numpy())
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    yo.backward(pe.tensor(g))
    np.testing.assert_array_equal(xo.grad.numpy(), xt.grad.numpy())
    ut = torch.nn.functional.pixel_unshuffle(yt.detach(), r)
    uo = F.pixel_unshuffle(yo.detach(), r)
    np.testing.assert_array_equal(uo.numpy(), ut.numpy())


def test_modules():
    m = pe.nn.PixelShuffle(2)
    assert repr(m) == "PixelShuffle(upscale_factor=2)"
    assert m(pe.zeros(1, 12, 3, 4)).shape == (1, 3, 6, 8)
    u = pe.nn.PixelUnshuffle(3)
    assert repr(u) == "PixelUnshuffle(downscale_factor=3)"
    assert u(pe.zeros(2, 1, 6, 9)).shape == (2, 9, 2, 3)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x: F.pixel_shuffle(x, 3), RuntimeError, "divisible by the square"),
        (lambda x: F.pixel_shuffle(x, 0), RuntimeError, "greater than 0"),
        (lambda x: F.pixel_shuffle(x, 2.0), TypeError, "must be an int"),
        (lambda x: F.pixel_shuffle(x.reshape(4, 16), 2), RuntimeError, "at least 3"),
        (lambda x: F.pixel_unshuffle(x, 3), RuntimeError, "height to be divisible"),
        (lambda x: F.pixel_unshuffle(x, -1), RuntimeError, "greater than 0"),
        (lambda x: F.pixel_shuffle(x.numpy(), 2), TypeError, "must be a Tensor"),
    ],
)
def test_bad_inputs(call, exc, match):
    x = pe.zeros(1, 4, 4, 4)
    with pytest.raises(exc, match=match):
        call(x)


def test_kernel_rejects_bad_shapes():
    k = pe.backend.backend(pe.autograd.Device("cpu")).native
    x = np.zeros((1, 4, 2, 2), np.float32)
    with pytest.raises(ValueError, match="do not match a pixel shuffle"):
        k.pixel_shuffle_forward(x, np.zeros((1, 1, 4, 5), np.float32), 2)
    with pytest.raises(ValueError, match="do not match a pixel shuffle"):
        k.pixel_shuffle_backward(np.zeros((1, 1, 4, 4), np.float32), x, 3)
    with pytest.raises(ValueError, match="must be >= 1"):
        k.pixel_shuffle_forward(x, x.copy(), 0)
    with pytest.raises(ValueError, match="overflows"):
        k.pixel_shuffle_forward(x, x.copy(), 2**40)


def test_benchmark_cases_run_their_checks(monkeypatch):
    """benchmarks/bench_pixel_shuffle.py checks each case against the float64 twin (and PyTorch)
    before timing it: its cases, shrunk to a tiny batch, pass those checks and give both rows."""
    # benchmarks/ is not installed: import it from the checkout (pytest does not put the
    # repository root on sys.path; pyengine itself is already imported from the install).
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from benchmarks import bench_pixel_shuffle as bench
    from benchmarks.bench_pool import _plain_bytes, case

    for name, shape, fn, _ in bench.CASES:
        small = (1, shape[1], 8, 8)
        rows = case(name, small, fn, tuple(fn(F, pe.zeros(small)).shape), _plain_bytes, 1)
        assert [row["workload"] for row in rows] == [f"{name} fwd", f"{name} f+b"]
        assert all(row["ms"] > 0 and row["numpy_ms"] > 0 for row in rows)
