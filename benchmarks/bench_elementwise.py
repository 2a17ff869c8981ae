"""Elementwise ops: add/mul/relu forward kernels (outputs preallocated) and forward+backward
through autograd, against NumPy and PyTorch (autograd too). GB/s counts the minimum traffic of
each workload in float32 streams of N elements: add/mul forward 3 (read a, b; write y); relu
forward 2; mul fwd+bwd 8 (+ read g, a, b; write ga, gb); add fwd+bwd 7 (+ copy g to ga and gb);
relu fwd+bwd 5 (+ read y, g; write gx). "% peak" is relative to the NumPy triad bandwidth."""

from __future__ import annotations

from typing import Any

import numpy as np

import pyengine as pe
from benchmarks.harness import check_close, measure, torch
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


def autograd(n: int, repeats: int) -> list[dict[str, Any]]:
    a, b, g = _data(n)
    pa, pb, pg = pe.tensor(a, requires_grad=True), pe.tensor(b, requires_grad=True), pe.tensor(g)
    fns = {
        "add": (lambda x, y: x + y, lambda: (a + b, g.copy(), g.copy()), 7),
        "mul": (lambda x, y: x * y, lambda: (a * b, g * b, g * a), 8),
        "relu": (lambda x, y: x.relu(), lambda: _np_relu(a, g), 5),
    }
    rows = []
    for op, (f, np_fn, streams) in fns.items():

        def step(f=f) -> tuple[Any, ...]:
            pa.grad = pb.grad = None
            y = f(pa, pb)
            y.backward(pg)
            return y, pa.grad, pb.grad

        def check(step=step, np_fn=np_fn, op=op) -> None:
            got, ref = step(), np_fn()
            for i, r in enumerate(ref):
                check_close(f"{op} fwd+bwd output {i}", got[i].detach().numpy(), r)

        t = None
        if torch is not None:
            ta = torch.tensor(a, requires_grad=True)
            tb = torch.tensor(b, requires_grad=True)
            tg = torch.from_numpy(g)
            tf = (lambda x, y: torch.relu(x)) if op == "relu" else f

            def t(tf=tf, ta=ta, tb=tb, tg=tg) -> None:
                ta.grad = tb.grad = None
                tf(ta, tb).backward(tg)

        rows.append(
            measure(
                f"{op} fwd+bwd (autograd)",
                (n,),
                step,
                check=check,
                numpy_fn=np_fn,
                torch_fn=t,
                nbytes=streams * 4 * n,
                repeats=repeats,
            )
        )
    return rows


def _np_relu(a: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    y = np.maximum(a, 0)
    return y, np.where(y > 0, g, 0).astype(np.float32)


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = [1 << 20] if quick else [1 << 20, 1 << 24]
    reps = 5 if quick else 15
    rows = []
    for n in sizes:
        rows += kernels(n, reps) + autograd(n, reps)
    return rows
