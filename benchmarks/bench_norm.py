"""Batch norm training step (forward + backward w.r.t. input, weight, bias): pyengine's C++
kernels (called directly, and through F.batch_norm + autograd) against the NumPy twin and PyTorch;
in ``run`` also group, instance and layer norm steps (``bench_per_sample``), and the
BatchNorm + ReLU training step (``bench_relu_shape``): the fused kernel pair
(batchnorm_relu_forward_train / batchnorm_relu_backward) against the unfused pair (the BatchNorm
kernels with the ReLU kernels between them), ``batch_norm(..., relu=True)`` through autograd and
PyTorch's ``F.relu(F.batch_norm(...))``.

"kernels" reuses its output arrays; "kernels + alloc", F.batch_norm, NumPy and PyTorch allocate
theirs each step, as training does. GB/s counts the minimum traffic of a fused implementation,
5 tensors of x's size: the forward reads x and writes y, the backward reads dy and x and writes
dx. The "add" row (c = a + b, three tensor streams) is pyengine's own elementwise kernel: a
triad-like bandwidth reference.

Usage, from the repository root:
    PYTHONPATH=. python benchmarks/bench_norm.py [--repeats 20] [--shape 16,64,40,40 ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from benchmarks.harness import check_close, measure, row
from pyengine.backend import numpy_ref
from pyengine.backend.device import backend

try:
    import torch
except ImportError:  # PyTorch is an optional reference
    torch = None

SHAPES = [(16, 64, 40, 40), (8, 32, 128, 128), (64, 128, 10, 10)]


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def inputs(shape: tuple[int, ...]):
    """(x, w, b, g) of one training step: input, weight, bias and output gradient, drawn from one
    seed so that every case of a shape times the same data."""
    rng = np.random.default_rng(0)
    C = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
    g = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal(C, dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    return x, w, b, g


def timed_rows(x, repeats: int):
    """(rows, add): add(name, fn) appends (name, median seconds, GB/s) of ``fn`` to rows, counting
    5 tensors of x's size."""
    nbytes = 5 * x.size * 4
    rows = []

    def add(name: str, fn: Callable[[], object]) -> None:
        t = median_time(fn, repeats)
        rows.append((name, t, nbytes / t / 1e9))

    return rows, add


def autograd_step(lib, data, forward) -> Callable[[], None]:
    """One step of ``forward(x, w, b).backward(g)``, (x, w, b, g) = ``data``, through the autograd
    of ``lib`` (pyengine or torch) on leaf tensors made once; each step clears their gradients
    first, as training does."""
    *arrays, g = data
    leaves = [lib.tensor(a, requires_grad=True) for a in arrays]
    grad = lib.tensor(g)

    def step() -> None:
        for t in leaves:
            t.grad = None
        forward(*leaves).backward(grad)

    return step


def outputs(x):
    """(y, dx, mean, invstd, dw, db) for ``kernel_step``."""
    C = x.shape[1]
    return np.empty_like(x), np.empty_like(x), *(np.empty(C, x.dtype) for _ in range(4))


def kernel_step(k, x, w, b, g, rm, rv, out=None):
    """One train step on raw arrays with the kernels of module ``k``; returns (y, dx, dw, db).
    ``out`` (from ``outputs``) reuses the output arrays, to time the kernels without the cost of
    first-touching freshly allocated memory."""
    y, dx, mean, invstd, dw, db = outputs(x) if out is None else out
    k.batchnorm_forward_train(x, w, b, y, mean, invstd, rm, rv, 0.1, 1e-5)
    k.batchnorm_backward(g, x, mean, invstd, w, dx, dw, db, True)
    return y, dx, dw, db


def check(k, x, w, b, g) -> None:
    """The float32 kernels against the float64 twin, before any timing."""
    C = x.shape[1]
    got = kernel_step(k, x, w, b, g, np.zeros(C, np.float32), np.ones(C, np.float32))
    ref = kernel_step(
        numpy_ref,
        *(a.astype(np.float64) for a in (x, w, b, g)),
        np.zeros(C),
        np.ones(C),
    )
    for name, a, r in zip(("y", "dx", "dw", "db"), got, ref):
        check_close(f"batch norm {name} against the twin", a, r)


def bench_shape(shape: tuple[int, ...], repeats: int) -> list[tuple[str, float, float]]:
    data = x, w, b, g = inputs(shape)
    C = shape[1]
    k = backend(pe.device("cpu")).native
    check(k, x, w, b, g)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    rows, add = timed_rows(x, repeats)
    out = outputs(x)
    add("pyengine kernels", lambda: kernel_step(k, x, w, b, g, rm, rv, out))
    add("pyengine kernels + alloc", lambda: kernel_step(k, x, w, b, g, rm, rv))
    prm, prv = pe.tensor(rm), pe.tensor(rv)
    add(
        "pyengine F.batch_norm",
        autograd_step(
            pe, data, lambda px, pw, pb: F.batch_norm(px, prm, prv, pw, pb, training=True)
        ),
    )
    add("numpy twin", lambda: kernel_step(numpy_ref, x, w, b, g, rm.copy(), rv.copy()))
    if torch is not None:
        trm, trv = torch.tensor(rm), torch.tensor(rv)
        tF = torch.nn.functional
        add(
            "torch",
            autograd_step(
                torch, data, lambda tx, tw, tb: tF.batch_norm(tx, trm, trv, tw, tb, training=True)
            ),
        )
    c = np.empty_like(x)
    t = median_time(lambda: k.binary_forward("add", x, g, c), repeats)
    rows.append(("add c=a+b (bandwidth ref)", t, 3 * x.size * 4 / t / 1e9))
    return rows


def relu_step(k, x, w, b, g, out, fused: bool):
    """BatchNorm + ReLU train step on raw arrays, reusing ``out`` (from ``outputs`` plus a
    masked-gradient buffer for the unfused pair); returns (y, dx, dw, db)."""
    y, dx, mean, invstd, dw, db, gm = out
    if fused:
        k.batchnorm_relu_forward_train(x, w, b, y, mean, invstd, None, None, 0.1, 1e-5)
        k.batchnorm_relu_backward(g, y, x, mean, invstd, w, dx, dw, db)
    else:
        k.batchnorm_forward_train(x, w, b, y, mean, invstd, None, None, 0.1, 1e-5)
        k.unary_forward("relu", y, y)
        k.unary_backward("relu", y, g, gm)
        k.batchnorm_backward(gm, x, mean, invstd, w, dx, dw, db, True)
    return y, dx, dw, db


def bench_relu_shape(shape: tuple[int, ...], repeats: int) -> list[tuple[str, float, float]]:
    """(name, seconds, GB/s at 5 tensors of traffic) for the BatchNorm + ReLU training step."""
    data = x, w, b, g = inputs(shape)
    k = backend(pe.device("cpu")).native
    bufs = {f: (*outputs(x), np.empty_like(x)) for f in (True, False)}
    ref64 = (*outputs(x.astype(np.float64)), np.empty(shape))
    ref = relu_step(numpy_ref, *(a.astype(np.float64) for a in (x, w, b, g)), ref64, True)
    for fused in (True, False):
        got = relu_step(k, x, w, b, g, bufs[fused], fused)
        for name, a, r in zip(("y", "dx", "dw", "db"), got, ref):
            check_close(f"bn+relu {name} (fused={fused}) against the twin", a, r)
    rows, add = timed_rows(x, repeats)
    add("fused kernels", lambda: relu_step(k, x, w, b, g, bufs[True], True))
    add("unfused kernels", lambda: relu_step(k, x, w, b, g, bufs[False], False))
    from pyengine.ops.norm import batch_norm

    add(
        "batch_norm(relu=True)",
        autograd_step(
            pe,
            data,
            lambda px, pw, pb: batch_norm(px, None, None, pw, pb, True, 0.1, 1e-5, relu=True),
        ),
    )
    if torch is not None:
        tF = torch.nn.functional
        add(
            "torch",
            autograd_step(
                torch,
                data,
                lambda tx, tw, tb: tF.relu(tF.batch_norm(tx, None, None, tw, tb, training=True)),
            ),
        )
    return rows


# Per-sample normalisations (csrc/norm_group.cpp): name, pyengine/torch call on F, the input's
# shape from an (N, C, H, W) one (layer norm normalises the channels of (N*H*W, C) rows).
PER_SAMPLE = [
    ("group_norm G=8", lambda F, x, w, b: F.group_norm(x, 8, w, b), lambda s: s),
    ("instance_norm", lambda F, x, w, b: F.instance_norm(x, weight=w, bias=b), lambda s: s),
    (
        "layer_norm (rows of C)",
        lambda F, x, w, b: F.layer_norm(x, (x.shape[-1],), w, b),
        lambda s: (s[0] * s[2] * s[3], s[1]),
    ),
]


def bench_per_sample(shape: tuple[int, ...], repeats: int) -> list[dict]:
    """F.group_norm / instance_norm / layer_norm forward + backward (input, weight, bias) through
    autograd, against the NumPy twin's kernels and torch autograd; 5 tensors of traffic as above."""
    rng = np.random.default_rng(0)
    rows = []
    for name, call, shape_of in PER_SAMPLE:
        s = shape_of(shape)
        C = s[-1] if "layer" in name else s[1]
        x = rng.standard_normal(s, dtype=np.float32) * 2 + 1
        g = rng.standard_normal(s, dtype=np.float32)
        w, b = (rng.standard_normal(C, dtype=np.float32) for _ in range(2))
        ts = [pe.tensor(a, requires_grad=True) for a in (x, w, b)]
        refs = [pe.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
        call(F, *refs).backward(pe.tensor(g.astype(np.float64)))

        pg = pe.tensor(g)

        def step(call=call, ts=ts, pg=pg) -> list:
            for t in ts:
                t.grad = None
            y = call(F, *ts)
            y.backward(pg)
            return [y.detach()] + [t.grad for t in ts]

        def check(step=step, refs=refs, call=call, name=name) -> None:
            got = step()
            with pe.no_grad():
                y64 = call(F, *[pe.tensor(r.detach().numpy()) for r in refs])
            for i, (a, r) in enumerate(zip(got, [y64] + [t.grad for t in refs])):
                check_close(f"{name} output {i}", a.numpy(), r.numpy())

        def twin(name=name, x=x, w=w, b=b, C=C, g=g) -> None:
            y, gx = np.empty_like(x), np.empty_like(x)
            gw, gb = np.empty_like(w), np.empty_like(b)
            if "layer" in name:
                m, i = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
                numpy_ref.layernorm_forward(x, w, b, y, m, i, 1e-5)
                numpy_ref.layernorm_backward(g, x, m, i, w, gx, gw, gb)
            else:
                G = 8 if "group" in name else C
                m, i = (np.empty((x.shape[0], G), x.dtype) for _ in range(2))
                numpy_ref.groupnorm_forward(x, w, b, y, m, i, G, 1e-5)
                numpy_ref.groupnorm_backward(g, x, m, i, w, gx, gw, gb, G)

        t = None
        if torch is not None:
            tts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
            tg = torch.from_numpy(g)

            def t(call=call, tts=tts, tg=tg) -> None:
                for v in tts:
                    v.grad = None
                call(torch.nn.functional, *tts).backward(tg)

        rows.append(
            measure(
                f"{name} fwd+bwd",
                s,
                step,
                check=check,
                numpy_fn=twin,
                torch_fn=t,
                nbytes=5 * 4 * x.size,
                repeats=repeats,
            )
        )
    return rows


def run(quick: bool) -> list[dict]:
    """Rows for ``python -m benchmarks`` (protocol in harness.py); bench_shape checks first."""
    out = []
    for shape in SHAPES[:1] if quick else SHAPES[:2]:
        out += bench_per_sample(shape, 5 if quick else 15)
    for shape in SHAPES[:1] if quick else SHAPES:
        times = {name: t * 1e3 for name, t, _ in bench_shape(shape, 5 if quick else 20)}
        for name in ("pyengine kernels", "pyengine F.batch_norm"):
            out.append(
                row(
                    f"batchnorm step ({name.split(' ', 1)[1]})",
                    shape,
                    times[name],
                    nbytes=5 * 4 * int(np.prod(shape)),
                    numpy_ms=times["numpy twin"],
                    torch_ms=times.get("torch"),
                )
            )
        times = {name: t * 1e3 for name, t, _ in bench_relu_shape(shape, 5 if quick else 20)}
        for name in ("fused kernels", "unfused kernels", "batch_norm(relu=True)"):
            out.append(
                row(
                    f"bn+relu step ({name})",
                    shape,
                    times[name],
                    nbytes=5 * 4 * int(np.prod(shape)),
                    torch_ms=times.get("torch"),
                )
            )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shape", action="append", help="N,C,H,W (repeatable)")
    args = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else SHAPES
    print(f"threads: pyengine {pe.get_num_threads()}", end="")
    print(f", torch {torch.get_num_threads()}" if torch is not None else "")
    print(f"{'shape':<20} {'impl':<28} {'ms':>9} {'GB/s':>8} {'vs numpy':>9} {'vs torch':>9}")
    for shape in shapes:
        rows = bench_shape(shape, args.repeats)
        times = {name: t for name, t, _ in rows}
        for name, t, gbs in rows:
            vs_np = times["numpy twin"] / t
            vs_t = f"{times['torch'] / t:9.2f}" if "torch" in times else f"{'-':>9}"
            label = str(shape) if name == rows[0][0] else ""
            print(f"{label:<20} {name:<28} {t * 1e3:9.3f} {gbs:8.1f} {vs_np:9.2f} {vs_t}")
        rows = bench_relu_shape(shape, args.repeats)
        times = {name: t for name, t, _ in rows}
        for name, t, gbs in rows:
            vs_t = f"{times['torch'] / t:9.2f}" if "torch" in times else f"{'-':>9}"
            print(f"{'':<20} {'bn+relu ' + name:<28} {t * 1e3:9.3f} {gbs:8.1f} {'-':>9} {vs_t}")


if __name__ == "__main__":
    main()
