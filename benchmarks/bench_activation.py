"""Activations of csrc/activation.cpp (gelu, gelu tanh, silu, elu, softplus, mish, prelu), forward +
backward as a training step runs them: pyengine through F.* and autograd, against the NumPy twin
(forward + backward kernels in float32; its gelu calls math.erf per element, so that row measures
the twin, not a tuned NumPy) and PyTorch autograd. Checked against the float64 twin first.
GB/s counts 5 float32 streams of x's size: forward reads x, writes y; backward reads x and dy,
writes dx.

Usage, from the repository root:  python -m benchmarks --only activation [--quick]
"""

from __future__ import annotations

from typing import Any

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from benchmarks.harness import check_close, measure, torch
from pyengine.backend import numpy_ref

# name, pyengine call, kernel op + params (for the twin), torch call
CASES = [
    ("gelu", lambda F, x: F.gelu(x), ("gelu", 0.0, 0.0)),
    ("gelu tanh", lambda F, x: F.gelu(x, approximate="tanh"), ("gelu_tanh", 0.0, 0.0)),
    ("silu", lambda F, x: F.silu(x), ("silu", 0.0, 0.0)),
    ("elu", lambda F, x: F.elu(x), ("elu", 1.0, 0.0)),
    ("softplus", lambda F, x: F.softplus(x), ("softplus", 1.0, 20.0)),
    ("mish", lambda F, x: F.mish(x), ("mish", 0.0, 0.0)),
]


def _twin_step(op: str, a: float, b: float, x: np.ndarray, g: np.ndarray) -> tuple[Any, Any]:
    y, gx = np.empty_like(x), np.empty_like(x)
    numpy_ref.activation_forward(op, x, y, a, b)
    numpy_ref.activation_backward(op, x, g, gx, a, b)
    return y, gx


def bench(shape: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32) * 2
    g = rng.standard_normal(shape, dtype=np.float32)
    px, pg = pe.tensor(x, requires_grad=True), pe.tensor(g)
    nbytes = 5 * 4 * x.size
    rows = []
    w_np = rng.uniform(0, 0.5, shape[1]).astype(np.float32)
    pw = pe.tensor(w_np, requires_grad=True)
    for name, call, (op, a, b) in CASES + [("prelu", None, ("", 0.0, 0.0))]:

        def step(call=call, name=name) -> tuple[Any, Any]:
            px.grad = pw.grad = None
            y = F.prelu(px, pw) if name == "prelu" else call(F, px)
            y.backward(pg)
            return y, px.grad

        if name == "prelu":

            def twin() -> tuple[Any, Any]:
                y, gx, gw = np.empty_like(x), np.empty_like(x), np.empty_like(w_np)
                numpy_ref.prelu_forward(x, w_np, y)
                numpy_ref.prelu_backward(x, w_np, g, gx, gw)
                return y, gx

            ref64 = pe.tensor(x.astype(np.float64), requires_grad=True)
            y64 = F.prelu(ref64, pe.tensor(w_np.astype(np.float64)))
        else:

            def twin(op=op, a=a, b=b) -> tuple[Any, Any]:
                return _twin_step(op, a, b, x, g)

            ref64 = pe.tensor(x.astype(np.float64), requires_grad=True)
            y64 = call(F, ref64)
        y64.backward(pe.tensor(g.astype(np.float64)))

        def check(step=step, y64=y64, ref64=ref64, name=name) -> None:
            y, gx = step()
            check_close(f"{name} forward", y.detach().numpy(), y64.detach().numpy())
            check_close(f"{name} backward", gx.numpy(), ref64.grad.numpy())

        t = None
        if torch is not None:
            tx = torch.tensor(x, requires_grad=True)
            tg, tw = torch.from_numpy(g), torch.tensor(w_np, requires_grad=True)

            def t(call=call, name=name, tx=tx, tg=tg, tw=tw, tf=torch.nn.functional) -> None:
                tx.grad = tw.grad = None
                (tf.prelu(tx, tw) if name == "prelu" else call(tf, tx)).backward(tg)

        rows.append(
            measure(
                f"{name} fwd+bwd",
                shape,
                step,
                check=check,
                numpy_fn=twin,
                torch_fn=t,
                nbytes=nbytes,
                repeats=repeats,
            )
        )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    shapes = [(8, 32, 64, 64)] if quick else [(8, 32, 64, 64), (16, 64, 64, 64)]
    rows = []
    for s in shapes:
        rows += bench(s, 5 if quick else 15)
    return rows
