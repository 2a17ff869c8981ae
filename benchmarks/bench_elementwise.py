"""Elementwise ops: add/mul/relu forward kernels (outputs preallocated) and forward+backward
through autograd, against NumPy and PyTorch (autograd too). GB/s counts the minimum traffic of
each workload in float32 streams of N elements: add/mul forward 3 (read a, b; write y); relu
forward 2; mul fwd+bwd 8 (+ read g, a, b; write ga, gb); add fwd+bwd 7 (+ copy g to ga and gb);
relu fwd+bwd 5 (+ read y, g; write gx). "% peak" is relative to the NumPy triad bandwidth. The
autograd rows time each library in processes of its own, three rounds interleaved and the median
kept (harness.interleaved_ms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import pyengine as pe
from benchmarks.harness import check_close, interleaved_ms, measure, row, torch
from pyengine.backend.device import _cpu


def _data(n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(n, dtype=np.float32) for _ in range(3))


def kernels(n: int, repeats: int) -> list[dict[str, Any]]:
    a, b, _ = _data(n)
    y, out = np.empty_like(a), np.empty_like(a)
    rows = []
    for op, np_fn in (("add", np.add), ("mul", np.multiply)):

        def check(op=op, np_fn=np_fn) -> None:
            _cpu.binary_forward(op, a, b, y)
            check_close(f"{op} forward", y, np_fn(a.astype(np.float64), b))

        t = None
        if torch is not None:
            tf, ta, tb = getattr(torch, op), torch.from_numpy(a), torch.from_numpy(b)
            tout = torch.from_numpy(out)

            def t(tf=tf, ta=ta, tb=tb, tout=tout) -> None:
                tf(ta, tb, out=tout)

        rows.append(
            measure(
                f"{op} fwd (kernel)",
                (n,),
                lambda op=op: _cpu.binary_forward(op, a, b, y),
                check=check,
                numpy_fn=lambda f=np_fn: f(a, b, out=out),
                torch_fn=t,
                nbytes=3 * 4 * n,
                repeats=repeats,
            )
        )

    def relu_check() -> None:
        _cpu.unary_forward("relu", a, y)
        check_close("relu forward", y, np.maximum(a, 0))

    tr = None
    if torch is not None:
        ta, tout = torch.from_numpy(a), torch.from_numpy(out)
        tr = lambda: torch.clamp_min(ta, 0.0, out=tout)  # noqa: E731
    rows.append(
        measure(
            "relu fwd (kernel)",
            (n,),
            lambda: _cpu.unary_forward("relu", a, y),
            check=relu_check,
            numpy_fn=lambda: np.maximum(a, 0, out=out),
            torch_fn=tr,
            nbytes=2 * 4 * n,
            repeats=repeats,
        )
    )
    return rows


_STREAMS = {"add": 7, "mul": 8, "relu": 5}


def work_autograd(lib: str, op: str, n: int) -> Callable[[], object]:
    """One forward+backward of ``op`` in ``lib``'s own process (harness.isolated_ms): leaves'
    gradients reset, the caller's gradient passed to backward, as a training step does."""
    a, b, g = _data(n)
    if lib == "numpy":
        return {
            "add": lambda: (a + b, g.copy(), g.copy()),
            "mul": lambda: (a * b, g * b, g * a),
            "relu": lambda: _np_relu(a, g),
        }[op]
    if lib == "pyengine":
        pa, pb, pg = (
            pe.tensor(a, requires_grad=True),
            pe.tensor(b, requires_grad=True),
            pe.tensor(g),
        )
        f = {"add": lambda: pa + pb, "mul": lambda: pa * pb, "relu": lambda: pa.relu()}[op]

        def step() -> None:
            pa.grad = pb.grad = None
            f().backward(pg)

        return step
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tg = torch.from_numpy(g)
    tf = {"add": lambda: ta + tb, "mul": lambda: ta * tb, "relu": lambda: torch.relu(ta)}[op]

    def tstep() -> None:
        ta.grad = tb.grad = None
        tf().backward(tg)

    return tstep


def autograd(n: int, repeats: int, rounds: int) -> list[dict[str, Any]]:
    """Forward+backward through autograd, each library timed in a process of its own (two
    OpenMP runtimes in one process, or one library's allocator state, skew the other)."""
    a, b, g = _data(n)
    pa, pb, pg = pe.tensor(a, requires_grad=True), pe.tensor(b, requires_grad=True), pe.tensor(g)
    fns = {
        "add": (lambda x, y: x + y, lambda: (a + b, g.copy(), g.copy())),
        "mul": (lambda x, y: x * y, lambda: (a * b, g * b, g * a)),
        "relu": (lambda x, y: x.relu(), lambda: _np_relu(a, g)),
    }
    rows = []
    for op, (f, np_fn) in fns.items():
        pa.grad = pb.grad = None
        y = f(pa, pb)
        y.backward(pg)
        got = (y, pa.grad, pb.grad)
        for i, r in enumerate(np_fn()):
            check_close(f"{op} fwd+bwd output {i}", got[i].detach().numpy(), r)
        libs = ("pyengine", "numpy", *(("torch",) if torch is not None else ()))
        target = "benchmarks.bench_elementwise:work_autograd"
        ms = interleaved_ms({lib: (target, (op, n), lib) for lib in libs}, rounds, repeats)
        rows.append(
            row(
                f"{op} fwd+bwd (autograd)",
                (n,),
                ms["pyengine"],
                nbytes=_STREAMS[op] * 4 * n,
                numpy_ms=ms["numpy"],
                torch_ms=ms.get("torch"),
            )
        )
    return rows


def _np_relu(a: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    y = np.maximum(a, 0)
    return y, np.where(y > 0, g, 0).astype(np.float32)


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = [1 << 20] if quick else [1 << 20, 1 << 24]
    reps, rounds = (5, 1) if quick else (15, 3)
    rows = []
    for n in sizes:
        rows += kernels(n, reps) + autograd(n, reps, rounds)
    return rows
