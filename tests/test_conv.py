import itertools
import os

import numpy as np
import pytest
from opcheck import check_op
from pyrun import run_python

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F
from pyengine.backend import numpy_ref
from pyengine.backend.device import use_reference

ALGOS = ["direct", "im2col"]

# (x shape, w shape, conv2d kwargs)
CONV_ROWS = [
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((2, 3, 8, 9), (5, 3, 3, 2), dict(stride=2, padding=1)),
    ((1, 4, 9, 7), (6, 2, 3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((3, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4)),
    ((4, 1, 5, 5), (8, 1, 3, 3), dict(padding=1)),
    ((2, 6, 5, 4), (3, 6, 1, 1), {}),
    ((2, 3, 1, 1), (2, 3, 1, 1), {}),
    ((2, 2, 1, 1), (3, 2, 3, 3), dict(padding=1)),
    ((1, 2, 6, 5), (3, 2, 2, 4), dict(padding="same", dilation=(1, 2))),
]

# (x shape, w shape, conv_transpose2d kwargs)
TRANSPOSE_ROWS = [
    ((2, 4, 4, 4), (4, 3, 2, 2), dict(stride=2)),
    ((1, 3, 5, 4), (3, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    (
        (2, 4, 3, 5),
        (4, 1, 3, 2),
        dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1), dilation=(1, 2), groups=2),
    ),
    ((2, 2, 1, 1), (2, 3, 1, 1), {}),
    ((1, 2, 3, 3), (2, 2, 3, 3), dict(dilation=2, output_padding=1)),
]


def _arrays(rng, xs, ws, bias):
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    return x, w, (rng.standard_normal(ws[0]) if bias else None)


# ---------------------------------------------------------------- against the twin
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("xs,ws,kw", CONV_ROWS)
def test_conv2d_against_twin(device, rng, algo, xs, ws, kw):
    x, w, b = _arrays(rng, xs, ws, True)
    check_op(lambda x, w, b: F.conv2d(x, w, b, algo=algo, **kw), [x, w, b], device=device)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("xs,ws,kw", TRANSPOSE_ROWS)
def test_conv_transpose2d_against_twin(device, rng, algo, xs, ws, kw):
    x, w, _ = _arrays(rng, xs, ws, False)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1))
    check_op(lambda x, w, b: F.conv_transpose2d(x, w, b, algo=algo, **kw), [x, w, b], device=device)


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_algorithms_agree(rng, n):
    """Both algorithms, both threading paths (images one by one / in parallel), the column tile
    loop (a big image) and the pointwise shortcut give the same forward and gradients."""
    cases = [
        ((n, 8, 11, 10), (6, 8, 3, 3), dict(padding=1)),
        ((n, 6, 9, 8), (6, 2, 3, 2), dict(stride=2, padding=(1, 0), groups=3, dilation=(1, 2))),
        ((n, 5, 6, 7), (4, 5, 1, 1), {}),
        ((1, 16, 100, 90), (2, 16, 3, 3), dict(padding=1)),
    ]
    for xs, ws, kw in cases:
        x, w, b = _arrays(rng, xs, ws, True)
        res = []
        for algo in ALGOS:
            ts = [pe.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
            y = F.conv2d(*ts, algo=algo, **kw)
            g = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
            (y * pe.tensor(g)).sum().backward()
            res.append([y.detach().numpy()] + [t.grad.numpy() for t in ts])
        for a, r in zip(res[0], res[1]):
            np.testing.assert_allclose(a, r, rtol=1e-4, atol=2e-4 * max(1.0, np.abs(r).max()))


# ---------------------------------------------------------------- twin formulas
def test_gradcheck_conv2d_twin(rng):
    x = pe.tensor(rng.standard_normal((2, 4, 5, 4)), requires_grad=True)
    w = pe.tensor(rng.standard_normal((4, 2, 3, 2)), requires_grad=True)
    b = pe.tensor(rng.standard_normal(4), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)

    assert pe.autograd.gradcheck(fn, [x, w, b])
    w2 = pe.tensor(rng.standard_normal((3, 4, 2, 3)), requires_grad=True)
    assert pe.autograd.gradcheck(
        lambda x, w: F.conv2d(x, w, padding="same", dilation=(1, 2)), [x, w2]
    )


def test_gradcheck_conv_transpose2d_twin(rng):
    x = pe.tensor(rng.standard_normal((1, 4, 3, 2)), requires_grad=True)
    w = pe.tensor(rng.standard_normal((4, 1, 3, 2)), requires_grad=True)
    b = pe.tensor(rng.standard_normal(2), requires_grad=True)
    fn = lambda x, w, b: F.conv_transpose2d(  # noqa: E731
        x, w, b, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2)
    )
    assert pe.autograd.gradcheck(fn, [x, w, b])


# ---------------------------------------------------------------- PyTorch cross-checks
def _torch_run(torch, fn, kw, x, w, b, g):
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = fn(*ts, **kw)
    y.backward(torch.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts]


def _pe_run(fn, kw, x, w, b, g):
    ts = [pe.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = fn(*ts, **kw)
    y.backward(g)
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts]


def _compare(got, ref, what):
    names = ("output", "grad input", "grad weight", "grad bias")
    for name, a, r in zip(names, got, ref):
        assert a.shape == r.shape, f"{what} {name}: {a.shape} vs {r.shape}"
        np.testing.assert_allclose(
            a, r, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(r).max()), err_msg=f"{what} {name}"
        )


def _conv_grid(n_cases, seed):
    """A fixed sample of kernel 1/3/5/7 x stride 1/2/3 x padding 0..3 x dilation 1/2 x groups
    1/depthwise x square/non-square kernels, on odd and even input sizes."""
    grid = list(
        itertools.product([1, 3, 5, 7], [1, 2, 3], [0, 1, 2, 3], [1, 2], [1, "dw"], [False, True])
    )
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(grid), n_cases, replace=False):
        k, s, p, d, g, nonsq = grid[i]
        kh, kw_ = (k, max(1, k - 2)) if nonsq else (k, k)
        h = max(d * (kh - 1) + 1 - 2 * p, 1) + int(rng.integers(0, 6))
        w = max(d * (kw_ - 1) + 1 - 2 * p, 1) + int(rng.integers(0, 6))
        c = 3 if g == "dw" else int(rng.integers(1, 5))
        groups = c if g == "dw" else 1
        yield (
            (int(rng.integers(1, 4)), c, h, w),
            (
                int(rng.integers(1, 3)) * groups if g == "dw" else int(rng.integers(1, 5)),
                c // groups,
                kh,
                kw_,
            ),
            dict(stride=s, padding=p, dilation=d, groups=groups),
        )


@pytest.mark.parametrize("algo", ALGOS)
def test_conv2d_torch_grid(torch, algo):
    rng = np.random.default_rng(7)
    for xs, ws, kw in _conv_grid(60, 11):
        x, w, b = (a.astype(np.float32) for a in _arrays(rng, xs, ws, True))
        tw = dict(kw)
        yshape = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **tw).shape
        g = rng.standard_normal(tuple(yshape)).astype(np.float32)
        ref = _torch_run(torch, torch.nn.functional.conv2d, tw, x, w, b, g)
        got = _pe_run(F.conv2d, dict(kw, algo=algo), x, w, b, g)
        _compare(got, ref, f"{xs} {ws} {kw}")


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_conv2d_torch_random_and_strings(torch):
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(25):
        groups = int(rng.choice([1, 2, 3]))
        c, k = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        kh, kw_ = (int(v) for v in rng.integers(1, 6, 2))
        pad = ["same", "valid", (int(rng.integers(0, 3)), int(rng.integers(0, 3)))][
            int(rng.integers(0, 3))
        ]
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        stride = (1, 1) if pad == "same" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        h = dil[0] * (kh - 1) + 1 + int(rng.integers(0, 7))
        w = dil[1] * (kw_ - 1) + 1 + int(rng.integers(0, 7))
        cases.append(
            (
                (int(rng.integers(1, 4)), c, h, w),
                (k, c // groups, kh, kw_),
                dict(stride=stride, padding=pad, dilation=dil, groups=groups),
            )
        )
    for xs, ws, kw in cases:
        x, w, b = (a.astype(np.float32) for a in _arrays(rng, xs, ws, True))
        yshape = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kw).shape
        g = rng.standard_normal(tuple(yshape)).astype(np.float32)
        ref = _torch_run(torch, torch.nn.functional.conv2d, kw, x, w, b, g)
        for algo in ALGOS:
            got = _pe_run(F.conv2d, dict(kw, algo=algo), x, w, b, g)
            _compare(got, ref, f"{algo} {xs} {ws} {kw}")


@pytest.mark.parametrize("algo", ALGOS)
def test_conv_transpose2d_torch_grid(torch, algo):
    rng = np.random.default_rng(9)
    grid = list(itertools.product([1, 2, 3, 4], [1, 2, 3], [0, 1, 2], [1, 2], [0, 1, 2], [1, 2]))
    for i in rng.choice(len(grid), 50, replace=False):
        k, s, p, d, op, groups = grid[i]
        if op >= s and op >= d:
            op = 0
        kh, kw_ = k, max(1, k - int(rng.integers(0, 2)))
        cin, cout_g = groups * int(rng.integers(1, 3)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        kw = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
        if (h - 1) * s - 2 * p + d * (kh - 1) + op + 1 <= 0 or (
            (w - 1) * s - 2 * p + d * (kw_ - 1) + op + 1 <= 0
        ):
            continue
        x, wt, _ = (
            a if a is None else a.astype(np.float32)
            for a in _arrays(rng, (2, cin, h, w), (cin, cout_g, kh, kw_), False)
        )
        b = rng.standard_normal(cout_g * groups).astype(np.float32)
        yshape = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(wt), **kw).shape
        g = rng.standard_normal(tuple(yshape)).astype(np.float32)
        ref = _torch_run(torch, torch.nn.functional.conv_transpose2d, kw, x, wt, b, g)
        got = _pe_run(F.conv_transpose2d, dict(kw, algo=algo), x, wt, b, g)
        _compare(got, ref, f"{(h, w)} {wt.shape} {kw}")


# ---------------------------------------------------------------- exact edge cases
def test_one_by_one_input_and_kernel():
    x = pe.tensor(np.array([[[[2.0]], [[3.0]]]], np.float32))
    w = pe.tensor(np.array([[[[5.0]], [[7.0]]]], np.float32))
    for algo in ALGOS:
        np.testing.assert_array_equal(F.conv2d(x, w, algo=algo).numpy(), [[[[31.0]]]])
        # 3x3 kernel on a 1x1 input with padding 1: only the centre tap sees the value.
        w3 = np.zeros((1, 2, 3, 3), np.float32)
        w3[0, :, 1, 1] = [5.0, 7.0]
        w3[0, :, 0, 0] = 100.0
        assert F.conv2d(x, pe.tensor(w3), padding=1, algo=algo).numpy().item() == 31.0


def test_padding_border_values():
    x = pe.tensor(np.ones((1, 1, 3, 3), np.float32))
    w = pe.tensor(np.ones((1, 1, 3, 3), np.float32))
    for algo in ALGOS:
        y = F.conv2d(x, w, padding=1, algo=algo).numpy()[0, 0]
        np.testing.assert_array_equal(y, [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def test_transpose_output_padding_exact():
    # stride 2, k=1: inputs land on even positions; output_padding adds a last row/column that
    # no input reaches, so it holds only the bias.
    x = pe.tensor(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2))
    w = pe.tensor(np.ones((1, 1, 1, 1), np.float32))
    b = pe.tensor(np.array([0.5], np.float32))
    for algo in ALGOS:
        y = F.conv_transpose2d(x, w, b, stride=2, output_padding=1, algo=algo).numpy()[0, 0]
        np.testing.assert_array_equal(
            y,
            [
                [1.5, 0.5, 2.5, 0.5],
                [0.5, 0.5, 0.5, 0.5],
                [3.5, 0.5, 4.5, 0.5],
                [0.5, 0.5, 0.5, 0.5],
            ],
        )


def test_unbatched_input_and_output_size():
    x = pe.randn(3, 6, 5)
    m = nn.Conv2d(3, 4, 3, padding=1)
    assert m(x).shape == (4, 6, 5)
    t = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    assert t(x.unsqueeze(0)).shape == (1, 2, 11, 9)
    assert t(x.unsqueeze(0), output_size=(12, 10)).shape == (1, 2, 12, 10)
    with pytest.raises(ValueError, match="output size"):
        t(x.unsqueeze(0), output_size=(13, 10))


def test_zero_batch():
    y = F.conv2d(pe.zeros(0, 2, 4, 4), pe.randn(3, 2, 3, 3))
    assert y.shape == (0, 3, 2, 2)


def test_first_layer_skips_input_grad():
    x = pe.randn(2, 1, 6, 6)
    w = pe.randn(4, 1, 3, 3, requires_grad=True)
    F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is None and w.grad is not None
    b = pe.randn(4, requires_grad=True)
    F.conv2d(x, pe.randn(4, 1, 3, 3), b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 2 * 16.0))


# ---------------------------------------------------------------- modules
def test_modules_match_torch(torch):
    for args, kw in [
        ((3, 8, 3), dict(padding=1)),
        ((4, 8, (3, 5)), dict(stride=2, groups=2, bias=False)),
        ((4, 4, 3), dict(padding="same", dilation=2, groups=4)),
    ]:
        m, tm = nn.Conv2d(*args, **kw), torch.nn.Conv2d(*args, **kw)
        assert repr(m) == repr(tm)
        assert m.weight.shape == tuple(tm.weight.shape)
        for a in (
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "groups",
            "in_channels",
            "out_channels",
            "padding_mode",
        ):
            assert getattr(m, a) == getattr(tm, a), a
    for args, kw in [
        ((8, 4, 2), dict(stride=2)),
        ((4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2, bias=False, dilation=2)),
    ]:
        m, tm = nn.ConvTranspose2d(*args, **kw), torch.nn.ConvTranspose2d(*args, **kw)
        assert repr(m) == repr(tm)
        assert m.weight.shape == tuple(tm.weight.shape)
        assert m.output_padding == tm.output_padding


def test_module_init_bounds_and_forward():
    m = nn.Conv2d(4, 6, 3, groups=2)
    bound = 1 / np.sqrt(2 * 9)
    assert np.abs(m.weight.detach().numpy()).max() <= bound
    assert np.abs(m.bias.detach().numpy()).max() <= bound
    assert len(list(m.parameters())) == 2
    x = pe.randn(2, 4, 5, 5)
    np.testing.assert_allclose(
        m(x).detach().numpy(), F.conv2d(x, m.weight, m.bias, groups=2).detach().numpy()
    )
    t = nn.ConvTranspose2d(4, 6, 2, stride=2)
    assert np.abs(t.weight.detach().numpy()).max() <= 1 / np.sqrt(6 * 4)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "xs,ws,kw,err,match",
    [
        ((1, 3, 5, 5), (4, 2, 3, 3), {}, RuntimeError, "expected input.*to have 2 channels"),
        ((1, 3, 2, 2), (4, 3, 3, 3), {}, RuntimeError, "Kernel size can't be greater"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(stride=0), RuntimeError, "non-positive stride"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(padding=-1), RuntimeError, "negative padding"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(dilation=0), RuntimeError, "dilation"),
        ((1, 4, 5, 5), (3, 2, 3, 3), dict(groups=2), RuntimeError, "divisible by 2"),
        ((1, 4, 5, 5), (4, 1, 3, 3), dict(groups=0), RuntimeError, "non-positive groups"),
        ((3, 5, 5), (4, 3, 3), {}, RuntimeError, "4-D weight"),
        ((5, 5), (4, 3, 3, 3), {}, RuntimeError, "Expected 3D"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(padding="full"), RuntimeError, "Invalid padding"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(padding="same", stride=2), RuntimeError, "strided"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(stride=(1, 2, 3)), RuntimeError, "list of 2 values"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(algo="fft"), ValueError, "algo"),
    ],
)
def test_conv2d_bad_inputs(xs, ws, kw, err, match):
    with pytest.raises(err, match=match):
        F.conv2d(pe.randn(*xs), pe.randn(*ws), **kw)


def test_bad_bias_and_transpose_inputs():
    with pytest.raises(RuntimeError, match="expected bias to be 1-dimensional with 4"):
        F.conv2d(pe.randn(1, 3, 5, 5), pe.randn(4, 3, 3, 3), pe.randn(3))
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.conv_transpose2d(pe.randn(1, 2, 1, 1), pe.randn(2, 3, 1, 1), padding=1)
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        F.conv_transpose2d(pe.randn(1, 2, 3, 3), pe.randn(2, 3, 3, 3), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match="to have 3 channels"):
        F.conv_transpose2d(pe.randn(1, 2, 3, 3), pe.randn(3, 3, 3, 3))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Invalid padding string"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")


def test_kernels_reject_bad_arrays():
    """The C++ kernels check what they are given and raise instead of crashing."""
    k = pe._cpu
    x = np.zeros((1, 2, 5, 5), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    y = np.zeros((1, 3, 3, 3), np.float32)
    geo = (1, 1, 0, 0, 1, 1, 1)
    for name in ("conv2d_direct_forward", "conv2d_im2col_forward"):
        fn = getattr(k, name)
        fn(x, w, None, y, *geo)
        with pytest.raises(ValueError, match="spatial size"):
            fn(x, w, None, np.zeros((1, 3, 5, 3), np.float32), *geo)
        with pytest.raises(ValueError, match="float32"):
            fn(x.astype(np.float64), w, None, y, *geo)
        with pytest.raises(ValueError, match="weight"):
            fn(x, w[:, :1], None, y, *geo)
        with pytest.raises(ValueError, match="bias"):
            fn(x, w, np.zeros(2, np.float32), y, *geo)
        with pytest.raises(ValueError, match="bias"):
            fn(x, w, [0.0, 0.0, 0.0], y, *geo)
        with pytest.raises(ValueError, match="groups"):
            fn(x, w, None, y, 1, 1, 0, 0, 1, 1, 2)
        with pytest.raises(ValueError, match="stride"):
            fn(x, w, None, y, 0, 1, 0, 0, 1, 1, 1)
        with pytest.raises(ValueError, match="C-contiguous"):
            fn(np.zeros((1, 2, 5, 10), np.float32)[..., ::2], w, None, y, *geo)
    with pytest.raises(ValueError, match="algo"):
        k.conv_transpose2d_forward(y, w, None, x, *geo, "fft")


def test_reference_mode_runs_twin(rng):
    x = pe.tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    w = pe.tensor(rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    with use_reference():
        ref = F.conv2d(x, w, padding=1).numpy()
    np.testing.assert_allclose(F.conv2d(x, w, padding=1).numpy(), ref, rtol=1e-5, atol=1e-5)
    assert numpy_ref.conv2d_direct_forward is numpy_ref.conv2d_im2col_forward


# ---------------------------------------------------------------- algo="auto" tuning
@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize("transposed", [False, True])
def test_auto_tuning_matches_forced(rng, monkeypatch, timed, transposed):
    """auto (timed and cached, or heuristic) gives the forced algorithms' results on awkward
    sizes; timing fills the cache once per pass and shape, the heuristic never touches it."""
    from pyengine.ops import conv as C

    monkeypatch.setattr(pe.backends, "conv_benchmark", timed)
    monkeypatch.setattr(C, "_tuned", {})
    fn = F.conv_transpose2d if transposed else F.conv2d
    for n, c, k, h, w in [(1, 1, 7, 33, 1), (3, 7, 1, 9, 10), (2, 33, 5, 7, 7)]:
        ws = (c, k, 2, 2) if transposed else (k, c, 3, 3)
        kw = dict(stride=2) if transposed else dict(padding=1)
        x, wt, _ = _arrays(rng, (n, c, h, w), ws, False)
        b = rng.standard_normal(k)
        g = None
        res = {}
        for algo in ("auto", "auto", "im2col"):
            ts = [pe.tensor(a.astype(np.float32), requires_grad=True) for a in (x, wt, b)]
            y = fn(*ts, algo=algo, **kw)
            g = g if g is not None else rng.standard_normal(y.shape).astype(np.float32)
            (y * pe.tensor(g)).sum().backward()
            res[algo] = [y.detach().numpy()] + [t.grad.numpy() for t in ts]
        for a, r in zip(res["auto"], res["im2col"]):
            np.testing.assert_allclose(a, r, rtol=1e-4, atol=2e-4 * max(1.0, np.abs(r).max()))
    if timed:
        assert len(C._tuned) == 9  # 3 shapes x (forward, input grad, weight grad)
        # the 3x3 layers may time Winograd fastest too (it is a candidate wherever it applies)
        assert set(C._tuned.values()) <= {"direct", "im2col", "winograd"}
    else:
        assert C._tuned == {}


# ---------------------------------------------------------------- implicit-GEMM paths
# The im2col forward packs patches straight into the GEMM's panels (stride 1: from a padded copy
# at the padded width; otherwise from the image), and a stride-1 input gradient runs as a forward
# conv with the flipped weight. Awkward sizes put panel edges mid-row and rows across panels.
IMPLICIT_ROWS = [
    ((1, 1, 1, 1), (1, 1, 1, 1), dict(padding=0, dilation=1)),
    ((7, 3, 1, 33), (5, 3, 1, 3), dict(padding=(0, 1))),
    ((2, 33, 7, 7), (7, 33, 3, 3), dict(padding=1)),
    ((1, 6, 9, 11), (4, 3, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ((2, 4, 10, 9), (6, 4, 3, 2), dict(padding=(1, 0))),
    ((1, 5, 17, 13), (33, 5, 3, 3), dict(stride=2, padding=1)),
    ((3, 2, 9, 8), (3, 2, 5, 3), dict(stride=(1, 3), padding=(2, 0))),
    ((1, 2, 6, 7), (3, 2, 2, 2), dict(padding="same")),
]


def _implicit_check(xs, ws, kw):
    rng = np.random.default_rng(3)
    x, w, b = _arrays(rng, xs, ws, True)
    ts = [pe.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
    y = F.conv2d(*ts, algo="im2col", **kw)
    g = rng.standard_normal(y.shape)
    (y * pe.tensor(g.astype(np.float32))).sum().backward()
    ref = [pe.tensor(a, requires_grad=True) for a in (x, w, b)]
    yr = F.conv2d(*ref, **kw)
    (yr * pe.tensor(g)).sum().backward()
    for got, want in zip(
        [y.detach()] + [t.grad for t in ts], [yr.detach()] + [t.grad for t in ref]
    ):
        want = want.numpy()
        np.testing.assert_allclose(
            got.numpy(), want, rtol=1e-4, atol=1e-4 * max(1, np.abs(want).max())
        )


@pytest.mark.parametrize("xs, ws, kw", IMPLICIT_ROWS)
def test_implicit_gemm_paths(xs, ws, kw):
    _implicit_check(xs, ws, kw)


@pytest.mark.parametrize("kernel", ["avx2", "scalar"])
def test_implicit_gemm_fallback_kernels(kernel):
    """The patch packers with the AVX2 (NR 16) and portable (NR 8) GEMM kernels."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from test_conv import IMPLICIT_ROWS, _implicit_check\n"
        "for row in IMPLICIT_ROWS: _implicit_check(*row)\n"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    run_python(["-c", code, here], env={"PE_GEMM_KERNEL": kernel}, check=True)
