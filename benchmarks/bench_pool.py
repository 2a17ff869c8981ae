"""Pooling and resampling: max_pool2d and avg_pool2d (k2 s2) and interpolate (nearest and
bilinear, x2) through pyengine's public API with autograd, against the NumPy twin (the same calls
under ``use_reference``) and PyTorch.

Two rows per case: "fwd" (no graph) and "f+b", forward plus the input gradient. GB/s counts the
bytes a single-pass kernel must move (inputs read and outputs written, max-pool's int64 indices
included), so "% peak" is the share of the NumPy triad bandwidth (harness.py). The float32 step
and PyTorch's are checked against the float64 twin before anything is timed.

``python -m benchmarks [--quick] --only pool``; ``OMP_WAIT_POLICY=PASSIVE python -m
benchmarks.bench_pool`` prints the full table without saving it. Quick mode's batch of 4 fits in
cache, so its "% peak" can exceed 100.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from benchmarks.harness import check_close, format_table, median_ms, row, torch
from pyengine.backend import device as dev


def _max_bytes(n_in: int, n_out: int) -> tuple[int, int]:
    """Forward reads x, writes y and the indices; backward reads g and the indices, writes gx."""
    return 4 * n_in + 12 * n_out, 12 * n_out + 4 * n_in


def _plain_bytes(n_in: int, n_out: int) -> tuple[int, int]:
    return 4 * (n_in + n_out), 4 * (n_in + n_out)


# name, input shape, op(functional module, x), output scale, bytes moved (forward, backward)
CASES: list[tuple[str, tuple[int, ...], Callable, float, Callable]] = [
    ("max_pool2d k2s2", (16, 64, 40, 40), lambda m, x: m.max_pool2d(x, 2), 0.5, _max_bytes),
    ("max_pool2d k2s2", (16, 64, 64, 64), lambda m, x: m.max_pool2d(x, 2), 0.5, _max_bytes),
    ("avg_pool2d k2s2", (16, 64, 64, 64), lambda m, x: m.avg_pool2d(x, 2), 0.5, _plain_bytes),
    (
        "interp nearest x2",
        (16, 64, 32, 32),
        lambda m, x: m.interpolate(x, scale_factor=2, mode="nearest"),
        2.0,
        _plain_bytes,
    ),
    (
        "interp bilinear x2",
        (16, 64, 32, 32),
        lambda m, x: m.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
        2.0,
        _plain_bytes,
    ),
]
QUICK_BATCH = 4


def _passes(lib: Any, fn: Callable, x: np.ndarray, g: np.ndarray) -> tuple[Callable, Callable]:
    """(forward without a graph, forward + backward returning (y, gx)) of ``fn`` in ``lib``
    (pyengine or torch), over its functional module."""
    mod = F if lib is pe else torch.nn.functional
    xt, gt = lib.tensor(x, requires_grad=True), lib.tensor(g)

    def fwd() -> Any:
        with lib.no_grad():
            return fn(mod, xt)

    def step() -> tuple[Any, Any]:
        xt.grad = None
        y = fn(mod, xt)
        y.backward(gt)
        return y.detach(), xt.grad

    return fwd, step


def case(
    name: str,
    shape: tuple[int, ...],
    fn: Callable,
    out_shape: tuple[int, ...],
    nbytes: Callable,
    repeats: int,
) -> list[dict[str, Any]]:
    """The "fwd" and "f+b" rows of ``fn`` on a ``shape`` input whose output is ``out_shape``
    (bench_pixel_shuffle's cases too)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(out_shape, dtype=np.float32)
    fwd_b, bwd_b = nbytes(x.size, g.size)

    ref = [t.numpy() for t in _passes(pe, fn, x.astype(np.float64), g.astype(np.float64))[1]()]
    ours = _passes(pe, fn, x, g)
    impls = {"pyengine": ours}
    if torch is not None:
        impls["torch"] = _passes(torch, fn, x, g)
    for impl, (_, step) in impls.items():
        for label, a, r in zip(("y", "gx"), step(), ref):
            check_close(f"{name} {impl} {label}", a.numpy(), r)

    def timed(fns: tuple[Callable, Callable]) -> tuple[float, float]:
        return median_ms(fns[0], repeats), median_ms(fns[1], repeats)

    torch_ms = timed(impls["torch"]) if torch is not None else (None, None)
    with dev.use_reference(True):
        numpy_ms = timed(ours)
    ms = timed(ours)
    return [
        row(
            f"{name} {pass_}",
            shape,
            ms[i],
            nbytes=moved,
            numpy_ms=numpy_ms[i],
            torch_ms=torch_ms[i],
        )
        for i, (pass_, moved) in enumerate((("fwd", fwd_b), ("f+b", fwd_b + bwd_b)))
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``python -m benchmarks`` (protocol in harness.py)."""
    rows = []
    for name, shape, fn, scale, nbytes in CASES:
        if quick:
            shape = (QUICK_BATCH, *shape[1:])
        n, c, h, w = shape
        out = (n, c, int(h * scale), int(w * scale))
        rows += case(name, shape, fn, out, nbytes, 3 if quick else 20)
    return rows


def main() -> None:
    print(format_table(run(False)))


if __name__ == "__main__":
    main()
