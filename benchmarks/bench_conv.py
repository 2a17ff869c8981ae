"""Convolution benchmark: the C++ direct and im2col kernels vs NumPy vs PyTorch (CPU).

For each shape, forward and backward are first checked against the float64 NumPy twin, then timed
(warm-up, repeats, median). Backward is the input gradient (skipped for a first layer, whose input
needs none) plus the weight and bias gradients. Run: ``python benchmarks/bench_conv.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pyengine import _cpu as K
from pyengine.backend import numpy_ref as R

# name, transposed, N, C_in, C_out, H, W, k, stride, padding, groups, needs input grad
SHAPES = [
    ("DnCNN 64->64 3x3 40x40", False, 16, 64, 64, 40, 40, 3, 1, 1, 1, True),
    ("U-Net 64->64 3x3 64x64", False, 4, 64, 64, 64, 64, 3, 1, 1, 1, True),
    ("first layer 1->64 40x40", False, 16, 1, 64, 40, 40, 3, 1, 1, 1, False),
    ("depthwise 64 3x3 40x40", False, 16, 64, 64, 40, 40, 3, 1, 1, 64, True),
    ("convT 128->64 k2 s2 32x32", True, 4, 128, 64, 32, 32, 2, 2, 0, 1, True),
]


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def numpy_conv_forward(x, w, b, stride, pad):
    """Sliding-window im2col + one matmul (groups=1 only)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, p, q = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * p * q, c * k * k)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, p, q, -1).transpose(0, 3, 1, 2)


def _geo(stride: int, pad: int, groups: int) -> tuple[int, ...]:
    return (stride, stride, pad, pad, 1, 1, groups)


def _setup(shape):
    _, tr, n, cin, cout, h, w, k, s, p, g, _ = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    if tr:
        wt = rng.standard_normal((cin, cout // g, k, k)).astype(np.float32)
        oh, ow = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
    else:
        wt = rng.standard_normal((cout, cin // g, k, k)).astype(np.float32)
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    b = rng.standard_normal(cout).astype(np.float32)
    gy = rng.standard_normal((n, cout, oh, ow)).astype(np.float32)
    flops = (
        2.0 * n * cout * oh * ow * (cin // g) * k * k
        if not tr
        else (2.0 * n * cin * h * w * (cout // g) * k * k)
    )
    return x, wt, b, gy, flops


def _engine(shape, algo):
    """(forward, backward) closures over the named C++ kernels, plus their outputs."""
    _, tr, *_, s, p, g, need_x = shape
    x, w, b, gy, _ = _setup(shape)
    geo = _geo(s, p, g)
    y, gx, gw, gb = np.empty_like(gy), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    if tr:

        def fwd():
            K.conv_transpose2d_forward(x, w, b, y, *geo, algo)

        def bwd():
            K.conv_transpose2d_backward_input(gy, w, gx, *geo, algo)
            K.conv_transpose2d_backward_weight(x, gy, gw, gb, *geo, algo)

    else:
        f = getattr(K, f"conv2d_{algo}_forward")
        bi = getattr(K, f"conv2d_{algo}_backward_input")
        bw = getattr(K, f"conv2d_{algo}_backward_weight")

        def fwd():
            f(x, w, b, y, *geo)

        def bwd():
            if need_x:
                bi(gy, w, gx, *geo)
            bw(x, gy, gw, gb, *geo)

    return fwd, bwd, (y, gx if need_x else None, gw, gb)


def _reference(shape):
    _, tr, *_, s, p, g, need_x = shape
    x, w, b, gy, _ = (
        a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in _setup(shape)
    )
    geo = _geo(s, p, g)
    y, gx, gw, gb = np.empty_like(gy), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    if tr:
        R.conv_transpose2d_forward(x, w, b, y, *geo)
        R.conv_transpose2d_backward_input(gy, w, gx, *geo)
        R.conv_transpose2d_backward_weight(x, gy, gw, gb, *geo)
    else:
        R.conv2d_im2col_forward(x, w, b, y, *geo)
        R.conv2d_im2col_backward_input(gy, w, gx, *geo)
        R.conv2d_im2col_backward_weight(x, gy, gw, gb, *geo)
    return y, gx if need_x else None, gw, gb


def _check(name: str, got, ref) -> None:
    for label, a, r in zip(("y", "gx", "gw", "gb"), got, ref):
        if r is None:
            continue
        err = np.abs(a - r).max() / max(1.0, np.abs(r).max())
        if err > 1e-4:
            raise AssertionError(f"{name}: {label} differs from the twin (rel err {err:.2e})")


def _numpy(shape):
    _, tr, *_, s, p, g, need_x = shape
    x, w, b, gy, _ = _setup(shape)
    geo = _geo(s, p, g)
    y, gx, gw, gb = np.empty_like(gy), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    if tr or g != 1:
        fwd = (
            (lambda: R.conv_transpose2d_forward(x, w, b, y, *geo))
            if tr
            else (lambda: R.conv2d_im2col_forward(x, w, b, y, *geo))
        )
    else:

        def fwd():
            return numpy_conv_forward(x, w, b.reshape(1, -1), s, p)

    def bwd():
        if tr:
            R.conv_transpose2d_backward_input(gy, w, gx, *geo)
            R.conv_transpose2d_backward_weight(x, gy, gw, gb, *geo)
            return
        if need_x:
            R.conv2d_im2col_backward_input(gy, w, gx, *geo)
        R.conv2d_im2col_backward_weight(x, gy, gw, gb, *geo)

    return fwd, bwd


def _torch(shape):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    _, tr, *_, s, p, g, need_x = shape
    x, w, b, gy = (torch.from_numpy(a) for a in _setup(shape)[:4])
    mask = [need_x, True, True]

    def fwd():
        with torch.no_grad():
            if tr:
                return torch.nn.functional.conv_transpose2d(x, w, b, s, p, groups=g)
            return torch.nn.functional.conv2d(x, w, b, s, p, groups=g)

    def bwd():
        return torch.ops.aten.convolution_backward(
            gy, x, w, [b.shape[0]], [s, s], [p, p], [1, 1], tr, [0, 0], g, mask
        )

    return fwd, bwd


def main() -> None:
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    head = (
        f"{'shape':28s} {'pass':4s} {'direct':>14s} {'im2col':>14s} {'numpy':>14s} {'torch':>14s}"
    )
    print(head + "   best/numpy  best/torch")
    for shape in SHAPES:
        name = shape[0]
        flops = _setup(shape)[4]
        ref = _reference(shape)
        engines = {}
        for algo in ("direct", "im2col"):
            fwd, bwd, outs = _engine(shape, algo)
            fwd()
            bwd()
            _check(f"{name} {algo}", outs, ref)
            engines[algo] = (fwd, bwd)
        others = {"numpy": _numpy(shape), "torch": _torch(shape)}
        for i, pass_ in enumerate(("fwd", "bwd")):
            mult = 1.0 if pass_ == "fwd" else (2.0 if shape[-1] else 1.0)
            row, times = [], {}
            for label, fns in list(engines.items()) + list(others.items()):
                if fns is None:
                    row.append(f"{'-':>14s}")
                    continue
                t = median_time(fns[i], repeats=3 if label == "numpy" else 5)
                times[label] = t
                row.append(f"{t * 1e3:7.2f}ms {mult * flops / t / 1e9:5.1f}")
            best = min(times["direct"], times["im2col"])
            ratios = f"   {times['numpy'] / best:9.2f}x"
            if "torch" in times:
                ratios += f"  {times['torch'] / best:9.2f}x"
            print(f"{name:28s} {pass_:4s} " + " ".join(row) + ratios)
    print("cells: median time and GFLOP/s; ratios > 1 mean the best engine kernel is faster")


if __name__ == "__main__":
    main()
