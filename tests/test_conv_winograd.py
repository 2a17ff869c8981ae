"""Winograd 3x3 convolution (csrc/conv_winograd.cpp, algo="winograd"): float32 kernels against
float64 references on the legal shape families, the float64 NumPy twin's gradients by gradcheck,
PyTorch as a cross-check, and the fused ReLU epilogue.

Tolerances come from the tile: a Winograd output mixes an (m+2)^2 tile of transformed products,
so its rounding error scales with the transforms' coefficients (up to 8 in F(4x4,3x3)'s output
transform, 1/24 in its filter transform) and with the magnitude of the whole tile, not of the one
output. The bound is ``C[m] * eps32 * max|conv(|x|, |w|)|`` (the conv of absolute values bounds
every partial sum). Measured worst ratios on the shapes below: 2.3 for F(2x2), 28 for F(4x4),
4.6 for im2col; C gives each about 8x headroom.
"""

import os

import numpy as np
import pytest
from opcheck import check_op
from pyrun import run_python
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn.functional as F
from pyengine import _cpu
from pyengine.backend import numpy_ref
from pyengine.ops import conv as conv_ops

EPS32 = 2.0**-24
C = {"winograd_f2": 16.0, "winograd_f4": 256.0, "winograd": 256.0, "im2col": 32.0}
TILED = ["winograd_f2", "winograd_f4", "winograd"]

# (N, C, H, W, K, padding): odd and even sizes, padding 0/1/2/3, 1 and 3+ channels, batch 1,
# planes smaller than one tile, partial last tiles in both directions
SHAPES = [
    (1, 1, 5, 7, 3, 0),
    (2, 3, 9, 8, 4, 1),
    (1, 4, 6, 5, 2, 2),
    (3, 5, 11, 13, 6, 3),
    (1, 2, 3, 3, 2, 0),
    (1, 16, 17, 19, 8, 1),
    (2, 6, 4, 10, 5, 2),
]
# The kernel's vector paths: 16-tile groups made of several tile rows (and a padded last group),
# tile rows longer than a group, several blocks of tiles per call, channel counts that are no
# multiple of 16 or of the GEMM's 12-row panels.
WIDE_SHAPES = [
    (3, 20, 21, 75, 13, 1),
    (2, 17, 37, 23, 24, 2),
    (1, 9, 70, 66, 7, 0),
    (2, 3, 21, 3, 2, 0),  # one output column: successive tile rows m floats apart in y
    (3, 2, 2, 1, 3, 1),
    # filter transform tasks of 64 input channels (70: two, the last short), K = 25 in three
    # 12-row panels, the last with zero rows; the input gradient swaps the two
    (1, 70, 9, 10, 25, 1),
]
# Padded inputs of more than two bands (band_floats in csrc/conv_winograd.cpp: at most 2 MB),
# convolved a band per thread: bands of tile rows of one image (the last band shorter), and
# bands of whole images; the weight gradient pads x and gy band by band.
BAND_SHAPES = [
    (1, 64, 150, 141, 48, 1),
    (20, 48, 35, 36, 40, 2),
]


def _ref(name, *arrays, geo):
    getattr(numpy_ref, f"conv2d_im2col_{name}")(*arrays, *geo)


def _passes(algo, x, w, b, gy, geo):
    y = np.empty(gy.shape, np.float32)
    gx = np.empty(x.shape, np.float32)
    gw = np.empty(w.shape, np.float32)
    gb = np.empty(b.shape, np.float32)
    getattr(_cpu, f"conv2d_{algo}_forward")(x, w, b, y, *geo)
    getattr(_cpu, f"conv2d_{algo}_backward_input")(gy, w, gx, *geo)
    getattr(_cpu, f"conv2d_{algo}_backward_weight")(x, gy, gw, gb, *geo)
    return y, gx, gw, gb


def _references(x, w, b, gy, geo):
    """float64 (value, bound) pairs: the result, and the same pass on absolute values."""
    out = []
    for name, args, shape in [
        ("forward", (x, w, b), gy.shape),
        ("backward_input", (gy, w), x.shape),
        ("backward_weight", (x, gy), w.shape),
    ]:
        pair = []
        for f in (lambda a: a, np.abs):
            r = np.zeros(shape)
            extra = (r, None) if name == "backward_weight" else (r,)
            _ref(name, *(f(a.astype(np.float64)) for a in args), *extra, geo=geo)
            pair.append(r)
        out.append(pair)
    return out


def _arrays(rng, N, Cin, H, W, K, p):
    x = rng.standard_normal((N, Cin, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, Cin, 3, 3)) / np.sqrt(9 * Cin)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    gy = rng.standard_normal((N, K, H + 2 * p - 2, W + 2 * p - 2)).astype(np.float32)
    return x, w, b, gy, (1, 1, p, p, 1, 1, 1)


@pytest.mark.parametrize("algo", TILED)
@pytest.mark.parametrize("shape", SHAPES + WIDE_SHAPES + BAND_SHAPES)
def test_against_float64(rng, algo, shape):
    _check_against_float64(rng, algo, shape)


def _check_against_float64(rng, algo, shape):
    x, w, b, gy, geo = _arrays(rng, *shape)
    got = _passes(algo, x, w, b, gy, geo)
    for what, g, (ref, bound) in zip(("y", "gx", "gw"), got, _references(x, w, b, gy, geo)):
        err = np.abs(g - ref).max()
        tol = C[algo] * EPS32 * bound.max()
        assert err <= tol, f"{algo} {shape} {what}: max error {err:.3g} > {tol:.3g}"
    # the bias gradient is a plain sum: float32 rounding relative to the sum of |gy|
    gb_bound = np.abs(gy).astype(np.float64).sum(axis=(0, 2, 3)).max()
    np.testing.assert_allclose(
        got[3], gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6 * gb_bound
    )
    # Both gradients in one call (one padded copy of gy where the passes' tiles agree: padding
    # 0 and 1 here; 2 and 3 run the two passes): the same tiles, blocks and sums as the two
    # passes, so the same bits.
    joint = [np.empty_like(a) for a in (x, w, b)]
    getattr(_cpu, f"conv2d_{algo}_backward")(x, gy, w, *joint, *geo)
    for what, g, want in zip(("gx", "gw", "gb"), joint, got[1:]):
        np.testing.assert_array_equal(g, want, err_msg=f"{algo} {shape} joint {what}")


@pytest.mark.parametrize("kernel", ["avx2", "scalar"])
def test_fallback_gemm_kernels(kernel):
    """The transforms write the GEMM's panels of the kernel in use: 16 tiles wide with AVX2, 8
    (a vector split over two panels) with the portable kernel."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import numpy as np\n"
        "from test_conv_winograd import SHAPES, WIDE_SHAPES, TILED, _check_against_float64\n"
        "for shape in SHAPES[:2] + WIDE_SHAPES[:2]:\n"
        "    for algo in TILED[:2]:\n"
        "        _check_against_float64(np.random.default_rng(0), algo, shape)\n"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    run_python(["-c", code, here], env={"PE_GEMM_KERNEL": kernel}, check=True)


def test_tile_error_on_dncnn_shapes(rng):
    """DnCNN's 64->64 3x3 pad-1 layer at 40x40 (batch 2): the float32 error of each tile size
    against float64, relative to the largest output; csrc/conv_winograd.cpp quotes these."""
    x, w, b, gy, geo = _arrays(rng, 2, 64, 40, 40, 64, 1)
    refs = _references(x, w, b, gy, geo)
    rel = {}
    for algo in ("im2col", "winograd_f2", "winograd_f4"):
        got = _passes(algo, x, w, b, gy, geo)
        rel[algo] = [np.abs(g - r).max() / np.abs(r).max() for g, (r, _) in zip(got, refs)]
    assert max(rel["winograd_f2"]) < 2e-6
    assert max(rel["winograd_f4"]) < 2e-5
    assert rel["winograd_f2"][0] < rel["winograd_f4"][0]


@pytest.mark.parametrize("algo", ["direct", "im2col", *TILED])
def test_fused_relu_epilogue(rng, algo):
    x, w, b, gy, geo = _arrays(rng, 2, 3, 9, 8, 4, 1)
    y = np.empty(gy.shape, np.float32)
    getattr(_cpu, f"conv2d_{algo}_forward")(x, w, b, y, *geo, relu=True)
    ref = np.zeros(gy.shape)
    _ref("forward", x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), ref, geo=geo)
    np.testing.assert_allclose(y, np.maximum(ref, 0), atol=1e-5)
    assert (y >= 0).all() and (y == 0).any()


def test_through_autograd_against_twin(rng):
    for N, Cin, H, W, K, p in [(2, 3, 9, 8, 4, 1), (1, 1, 6, 7, 5, 0), (1, 4, 5, 5, 3, 2)]:
        x = rng.standard_normal((N, Cin, H, W))
        w = rng.standard_normal((K, Cin, 3, 3))
        b = rng.standard_normal(K)
        check_op(
            lambda x, w, b, p=p: F.conv2d(x, w, b, padding=p, algo="winograd"),
            [x, w, b],
            atol=1e-4,
            rtol=1e-4,
        )


@pytest.mark.parametrize("p", [0, 1, 2])
def test_gradcheck_winograd_twin(rng, p):
    """float64 tensors run the NumPy twin: its Winograd backward against finite differences."""
    x = pe.tensor(rng.standard_normal((1, 2, 5, 6)), requires_grad=True)
    w = pe.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    b = pe.tensor(rng.standard_normal(3), requires_grad=True)
    for tile in ("winograd_f2", "winograd_f4"):

        def fn(x, w, b, tile=tile):
            return conv_ops.Conv2d.apply(
                x, w, b, geo=(1, 1, p, p, 1, 1, 1), out_hw=(3 + 2 * p, 4 + 2 * p), algo=tile
            )

        assert pe.autograd.gradcheck(fn, [x, w, b])


def test_twin_matches_direct_in_float64(rng):
    x, w, b, gy, geo = _arrays(rng, 2, 3, 7, 9, 4, 2)
    x, w, b, gy = (a.astype(np.float64) for a in (x, w, b, gy))
    refs = _references(x, w, b, gy, geo)
    for tile in TILED:
        y, gx, gw = np.zeros(gy.shape), np.zeros(x.shape), np.zeros(w.shape)
        getattr(numpy_ref, f"conv2d_{tile}_forward")(x, w, b, y, *geo)
        getattr(numpy_ref, f"conv2d_{tile}_backward_input")(gy, w, gx, *geo)
        getattr(numpy_ref, f"conv2d_{tile}_backward_weight")(x, gy, gw, None, *geo)
        for g, (r, _) in zip((y, gx, gw), refs):
            np.testing.assert_allclose(g, r, atol=1e-11)
        joint = np.zeros(x.shape), np.zeros(w.shape), np.zeros(b.shape)
        getattr(numpy_ref, f"conv2d_{tile}_backward")(x, gy, w, *joint, *geo)
        for g, r in zip(joint, (refs[1][0], refs[2][0], gy.sum(axis=(0, 2, 3)))):
            np.testing.assert_allclose(g, r, atol=1e-11)


def test_torch_cross_check(torch, rng):
    for N, Cin, H, W, K, p in [(2, 3, 9, 8, 4, 1), (1, 8, 13, 11, 6, 2)]:
        x = rng.standard_normal((N, Cin, H, W))
        w = rng.standard_normal((K, Cin, 3, 3)) / np.sqrt(9 * Cin)
        b = rng.standard_normal(K)
        torch_check(
            torch,
            lambda x, w, b, p=p: F.conv2d(x, w, b, padding=p, algo="winograd"),
            [x, w, b],
            torch_fn=lambda x, w, b, p=p: torch.nn.functional.conv2d(x, w, b, padding=p),
            atol=1e-4,
            rtol=1e-4,
        )


@pytest.mark.parametrize(
    "kw,ws",
    [
        (dict(stride=2), (4, 3, 3, 3)),
        (dict(dilation=2), (4, 3, 3, 3)),
        (dict(groups=3), (3, 1, 3, 3)),
        ({}, (4, 3, 5, 5)),
    ],
)
def test_unsupported_geometry_raises(rng, kw, ws):
    x = pe.tensor(rng.standard_normal((1, 3, 12, 12)).astype(np.float32))
    w = pe.tensor(rng.standard_normal(ws).astype(np.float32))
    with pytest.raises(ValueError, match="winograd"):
        F.conv2d(x, w, algo="winograd", **kw)


def _spy_joint(monkeypatch):
    """The list that each call of the CPU's joint Winograd backward appends to."""
    calls = []
    native = pe.backend.backend(pe.device("cpu")).native
    joint = _cpu.conv2d_winograd_backward
    monkeypatch.setattr(native, "conv2d_winograd_backward", lambda *a: calls.append(1) or joint(*a))
    return calls


@pytest.mark.parametrize("bias, frozen", [(True, False), (False, False), (True, True)])
def test_autograd_runs_the_joint_backward(rng, monkeypatch, bias, frozen):
    """Where both gradients are wanted and both passes run Winograd, autograd makes one call for
    them (and the bias gradient); with the weight frozen, the input gradient's pass alone."""
    calls = _spy_joint(monkeypatch)
    x, w, b, gy, geo = _arrays(rng, 2, 16, 12, 13, 24, 1)
    xt, wt = pe.tensor(x, requires_grad=True), pe.tensor(w, requires_grad=not frozen)
    bt = pe.tensor(b, requires_grad=True) if bias else None
    F.conv2d(xt, wt, bt, padding=1, algo="winograd").backward(pe.tensor(gy))
    assert calls == ([] if frozen else [1])
    _, gx, gw, gb = _passes("winograd", x, w, b, gy, geo)
    np.testing.assert_array_equal(xt.grad.numpy(), gx)
    if not frozen:
        np.testing.assert_array_equal(wt.grad.numpy(), gw)
    if bias and not frozen:
        np.testing.assert_array_equal(bt.grad.numpy(), gb)
    elif bias:  # summed on its own (sum_reduce), in another order
        np.testing.assert_allclose(bt.grad.numpy(), gb, rtol=1e-5)


def test_auto_joins_the_backward_once_both_passes_are_tuned(rng, monkeypatch):
    """ "auto" tunes each backward pass on its own the first time; once both chose Winograd, the
    next backward is the joint call."""
    calls = _spy_joint(monkeypatch)
    monkeypatch.setattr(pe.backends, "conv_benchmark", True)
    monkeypatch.setattr(conv_ops, "_tuned", {})
    monkeypatch.setattr(conv_ops, "_candidates", lambda ctx, p: ["winograd"])
    x, w, b, gy, _ = _arrays(rng, 1, 16, 10, 10, 16, 1)
    xt, wt = pe.tensor(x, requires_grad=True), pe.tensor(w, requires_grad=True)
    for step in range(2):
        F.conv2d(xt, wt, padding=1).backward(pe.tensor(gy))
        assert calls == [1] * step


def test_auto_considers_winograd(rng):
    x = pe.tensor(rng.standard_normal((1, 4, 10, 10)).astype(np.float32))
    w3 = pe.tensor(rng.standard_normal((4, 4, 3, 3)).astype(np.float32))
    seen = []
    orig, bench = conv_ops._candidates, pe.backends.conv_benchmark
    try:
        conv_ops._candidates = lambda ctx, p: seen.append(orig(ctx, p)) or seen[-1]
        pe.backends.conv_benchmark = True
        conv_ops._tuned.clear()
        F.conv2d(x, w3, padding=1)
        F.conv2d(x, w3, stride=2)
    finally:
        conv_ops._candidates, pe.backends.conv_benchmark = orig, bench
    assert seen == [["direct", "im2col", "winograd"], ["direct", "im2col"]]
    # Weight-gradient accumulators (36*K*C floats a thread) past both the input and 32 MB: the
    # U-Net's 8x8 512->512 bottleneck leaves Winograd out of its weight gradient; its 32x32
    # 128->128 layer (0.6M floats a thread, over its input's 0.5M) keeps it.
    geo = (1, 1, 1, 1, 1, 1, 1)
    bottleneck = type("Ctx", (), dict(geo=geo, wshape=(512, 512, 3, 3), xshape=(4, 512, 8, 8)))
    assert "winograd" in orig(bottleneck, "fwd")
    assert "winograd" not in orig(bottleneck, "bwd_weight")
    mid = type("Ctx", (), dict(geo=geo, wshape=(128, 128, 3, 3), xshape=(4, 128, 32, 32)))
    assert "winograd" in orig(mid, "bwd_weight")


def _ctx(wshape, xshape, geo=(1, 1, 1, 1, 1, 1, 1)):
    return conv_ops.Conv2d.__new__(conv_ops.Conv2d), dict(geo=geo, wshape=wshape, xshape=xshape)


@pytest.mark.parametrize(
    "wshape, geo, want",
    [
        ((64, 64, 3, 3), (1, 1, 1, 1, 1, 1, 1), "winograd"),  # DnCNN middle layer
        ((64, 1, 3, 3), (1, 1, 1, 1, 1, 1, 1), "im2col"),  # first layer: too few channels
        ((1, 64, 3, 3), (1, 1, 1, 1, 1, 1, 1), "direct"),  # last layer: one output channel
        ((64, 64, 3, 3), (2, 2, 1, 1, 1, 1, 1), "im2col"),  # strided
        ((64, 64, 5, 5), (1, 1, 2, 2, 1, 1, 1), "im2col"),  # 5x5
    ],
)
def test_heuristic_runs_winograd_on_wide_3x3(monkeypatch, wshape, geo, want):
    ctx, attrs = _ctx(wshape, (16, wshape[1], 40, 40), geo)
    ctx.__dict__.update(attrs)
    assert conv_ops._heuristic(ctx, "fwd") == want
    monkeypatch.setattr(pe.backends, "allow_winograd", False)
    assert conv_ops._heuristic(ctx, "fwd") == ("im2col" if want == "winograd" else want)
    assert "winograd" not in conv_ops._candidates(ctx, "fwd")


def test_deterministic_training_uses_winograd_and_matches_forced(rng, monkeypatch):
    """Under use_deterministic_algorithms the 64->64 layer's passes run Winograd: the results
    equal algo="winograd" bit for bit, and differ from im2col's by rounding only."""
    x = rng.standard_normal((2, 64, 48, 48)).astype(np.float32)  # large enough for its dU
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)

    def run(algo):
        xt, wt = pe.tensor(x, requires_grad=True), pe.tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, padding=1, algo=algo)
        (y * y).sum().backward()
        return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()

    monkeypatch.setattr(pe.backends, "_deterministic", True)
    auto, wino, im2col = run("auto"), run("winograd"), run("im2col")
    for a, b, c in zip(auto, wino, im2col):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-4 * np.abs(c).max())
