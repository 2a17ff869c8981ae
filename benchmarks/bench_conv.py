"""Convolution: pyengine's conv2d and conv_transpose2d (the public API with autograd, algo "auto"
and, outside quick mode, the forced "direct" and "im2col" kernels) against NumPy and PyTorch on
the layers of the models: DnCNN's 64->64 3x3 layer (batch 16, 40x40), a U-Net 64->64 3x3 layer
(batch 4, 64x64), the 1->64 first layer (batch 16, 40x40) and the U-Net's 128->64 k2 s2
transposed conv (batch 4, 32x32). Each library and algorithm is timed in a process of its own
(harness.isolated_ms), after every result was checked in this one.

Two rows per case: "fwd" (no graph) and "f+b", a training step's forward plus backward: weight and
bias gradients, and the input gradient except for a first layer, whose input needs none. GFLOP/s
counts 2*N*K*P*Q*C*R*S per GEMM-shaped pass (forward, input gradient, weight gradient).

NumPy is a plain NumPy conv: sliding-window im2col + one matmul forward; backward the weight
gradient as gy^T @ cols and the input gradient as (gy @ w) scattered back by tap adds (col2im); the
k2 s2 transposed conv, whose taps never overlap, is one matmul each way plus a reshuffle. Every
pyengine variant, the NumPy and the PyTorch step are checked against the float64 NumPy twin
before anything is timed.

``python -m benchmarks [--quick] --only conv``; ``OMP_WAIT_POLICY=PASSIVE python -m
benchmarks.bench_conv`` prints the full table without saving it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import pyengine as pe
import pyengine.nn.functional as F
from benchmarks.harness import check_close, format_table, interleaved_ms, row, torch

# label, input shape (N, C, H, W), output channels, kernel, stride, padding, needs input grad
CONV = [
    ("DnCNN 64>64", (16, 64, 40, 40), 64, 3, 1, 1, True),
    ("U-Net 64>64", (4, 64, 64, 64), 64, 3, 1, 1, True),
    ("first 1>64", (16, 1, 40, 40), 64, 3, 1, 1, False),
]
CONVT = ("k2s2 128>64", (4, 128, 32, 32), 64, 2, 2, 0, True)
QUICK_BATCH = {"DnCNN 64>64": 4, "U-Net 64>64": 1, "first 1>64": 4, "k2s2 128>64": 1}
ALGOS = ("auto", "direct", "im2col", "winograd")
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _im2col(x: np.ndarray, k: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    """(N*P*Q, C*k*k) columns of x's zero-padded k x k windows, rows in (n, p, q) order."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, p, q = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * p * q, c * k * k), p, q


def numpy_conv(x, w, b, stride: int, pad: int, gy=None, need_x: bool = True):
    """y, or with ``gy`` the training step (y, gx or None, gw, gb), of a groups=1 conv2d."""
    n, c, h, wd = x.shape
    kout, k = w.shape[0], w.shape[2]
    cols, p, q = _im2col(x, k, stride, pad)
    w2 = w.reshape(kout, -1)
    y = (cols @ w2.T + b).reshape(n, p, q, kout).transpose(0, 3, 1, 2)
    if gy is None:
        return y
    g2 = gy.transpose(0, 2, 3, 1).reshape(n * p * q, kout)
    gw = (g2.T @ cols).reshape(w.shape)
    gb = g2.sum(0)
    gx = None
    if need_x:
        gcols = (g2 @ w2).reshape(n, p, q, c, k, k).transpose(0, 3, 4, 5, 1, 2)
        gxp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), x.dtype)
        span_h, span_w = (p - 1) * stride + 1, (q - 1) * stride + 1
        for r in range(k):
            for s in range(k):
                gxp[:, :, r : r + span_h : stride, s : s + span_w : stride] += gcols[:, :, r, s]
        gx = gxp[:, :, pad : pad + h, pad : pad + wd]
    return y, gx, gw, gb


def numpy_conv_transpose(x, w, b, gy=None):
    """conv_transpose2d with stride == kernel and no padding: each input pixel writes its own
    k x k output block, so forward and both gradients are single matmuls."""
    n, cin, h, wd = x.shape
    cout, k = w.shape[1], w.shape[2]
    x2 = x.transpose(0, 2, 3, 1).reshape(n * h * wd, cin)
    w2 = w.reshape(cin, cout * k * k)
    y = (x2 @ w2).reshape(n, h, wd, cout, k, k).transpose(0, 3, 1, 4, 2, 5)
    y = y.reshape(n, cout, h * k, wd * k) + b.reshape(1, -1, 1, 1)
    if gy is None:
        return y
    g2 = gy.reshape(n, cout, h, k, wd, k).transpose(0, 2, 4, 1, 3, 5).reshape(n * h * wd, -1)
    gx = (g2 @ w2.T).reshape(n, h, wd, cin).transpose(0, 3, 1, 2)
    return y, gx, (x2.T @ g2).reshape(w.shape), gy.sum(axis=(0, 2, 3))


def _passes(lib: Any, op: Callable, arrays: Arrays, need_x: bool) -> tuple[Callable, Callable]:
    """(forward without a graph, forward + backward) of ``op(x, w, b)`` in ``lib`` (pyengine or
    torch); the second returns (y, gx, gw, gb)."""
    x, w, b, gy = arrays
    xt = lib.tensor(x, requires_grad=need_x)
    wt, bt, gt = (
        lib.tensor(w, requires_grad=True),
        lib.tensor(b, requires_grad=True),
        lib.tensor(gy),
    )

    def fwd() -> Any:
        with lib.no_grad():
            return op(xt, wt, bt)

    def step() -> tuple[Any, ...]:
        xt.grad = wt.grad = bt.grad = None
        y = op(xt, wt, bt)
        y.backward(gt)
        return y.detach(), xt.grad, wt.grad, bt.grad

    return fwd, step


def _check(name: str, got: tuple[Any, ...], ref: tuple[Any, ...]) -> None:
    for label, a, r in zip(("y", "gx", "gw", "gb"), got, ref):
        if r is not None:
            check_close(f"{name} {label}", a if isinstance(a, np.ndarray) else a.numpy(), r)


def _setup(kind: str, index: int, quick: bool) -> dict[str, Any]:
    """Operands and functions of case ``index`` of CONV (``kind`` "conv") or CONVT ("convT"),
    the same in every process (seeded)."""
    label, shape, cout, k, stride, pad, need_x = CONV[index] if kind == "conv" else CONVT
    if quick:
        shape = (QUICK_BATCH[label], *shape[1:])
    n, cin, h, w = shape
    if kind == "conv":
        wshape, fan_in = (cout, cin, k, k), cin * k * k
        p, q = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        flops = 2.0 * n * cout * p * q * cin * k * k
        pe_fn, torch_fn = F.conv2d, torch.nn.functional.conv2d if torch is not None else None
    else:
        wshape, fan_in = (cin, cout, k, k), cin
        p, q = (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k
        flops = 2.0 * n * cin * h * w * cout * k * k
        pe_fn = F.conv_transpose2d
        torch_fn = torch.nn.functional.conv_transpose2d if torch is not None else None
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    wt = rng.standard_normal(wshape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
    b = rng.standard_normal(cout, dtype=np.float32)
    gy = rng.standard_normal((n, cout, p, q), dtype=np.float32)
    arrays = (x, wt, b, gy)

    def np_run(grad: bool) -> Any:
        g = gy if grad else None
        if kind == "conv":
            return numpy_conv(x, wt, b, stride, pad, g, need_x)
        return numpy_conv_transpose(x, wt, b, g)

    def pe_op(algo: str) -> Callable:
        return lambda *xwb: pe_fn(*xwb, stride, pad, algo=algo)

    def torch_op(*xwb: Any) -> Any:
        return torch_fn(*xwb, stride, pad)

    return dict(
        name=f"{kind} {label}",
        shape=shape,
        arrays=arrays,
        need_x=need_x,
        flops=flops,
        np_run=np_run,
        pe_op=pe_op,
        torch_op=torch_op,
    )


def work(lib: str, kind: str, index: int, quick: bool, algo: str, grad: bool) -> Callable:
    """The pass to time in ``lib``'s own process (harness.isolated_ms): forward without a graph,
    or with ``grad`` forward + backward."""
    c = _setup(kind, index, quick)
    if lib == "numpy":
        return lambda: c["np_run"](grad)
    op = c["pe_op"](algo) if lib == "pyengine" else c["torch_op"]
    return _passes(pe if lib == "pyengine" else torch, op, c["arrays"], c["need_x"])[int(grad)]


def case(
    kind: str, index: int, quick: bool, algos: tuple[str, ...], repeats: int, rounds: int
) -> list[dict[str, Any]]:
    """Check, then time (each library and algorithm in processes of its own, ``rounds`` of them
    interleaved: harness.interleaved_ms), one layer: a fwd and an f+b row per algo."""
    c = _setup(kind, index, quick)
    name, arrays, need_x = c["name"], c["arrays"], c["need_x"]
    # Check everything first, against the float64 twin (float64 pyengine tensors run on it).
    ref64 = _passes(pe, c["pe_op"]("auto"), tuple(a.astype(np.float64) for a in arrays), need_x)
    ref = tuple(None if a is None else a.numpy() for a in ref64[1]())
    _check(f"{name} numpy", c["np_run"](True), ref)
    for a in algos:
        _check(f"{name} {a}", _passes(pe, c["pe_op"](a), arrays, need_x)[1](), ref)
    if torch is not None:
        _check(f"{name} torch", _passes(torch, c["torch_op"], arrays, need_x)[1](), ref)

    libs = [("pyengine", a) for a in algos] + [("numpy", "")]
    libs += [("torch", "")] if torch is not None else []
    ms = interleaved_ms(
        {
            (lib, a, g): ("benchmarks.bench_conv:work", (kind, index, quick, a, g), lib)
            for lib, a in libs
            for g in (False, True)
        },
        rounds,
        repeats,
    )
    rows = []
    for a in algos:
        for i, (pass_, mult) in enumerate((("fwd", 1.0), ("f+b", 3.0 if need_x else 2.0))):
            rows.append(
                row(
                    f"{name} {pass_} {a}",
                    c["shape"],
                    ms[("pyengine", a, bool(i))],
                    flops=mult * c["flops"],
                    numpy_ms=ms[("numpy", "", bool(i))],
                    torch_ms=ms.get(("torch", "", bool(i))),
                )
            )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``python -m benchmarks`` (protocol in harness.py)."""
    repeats, rounds = (3, 1) if quick else (10, 3)
    algos = ALGOS[:1] if quick else ALGOS
    cases = [("conv", i) for i in range(len(CONV))] + [("convT", 0)]
    rows = []
    for kind, i in cases:
        # Winograd only where it applies (3x3, stride 1): not on the k2 s2 transposed conv.
        usable = tuple(a for a in algos if a != "winograd" or kind == "conv")
        rows += case(kind, i, quick, usable, repeats, rounds)
    return rows


def main() -> None:
    print(format_table(run(False)))


if __name__ == "__main__":
    main()
