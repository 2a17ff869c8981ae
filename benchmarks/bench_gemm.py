"""GEMM: pyengine's C++ sgemm kernel (called directly, output preallocated) against NumPy's BLAS
and PyTorch on square products and the im2col shape of a 3x3x64 conv on a 160x160 image batch
(25600x576 @ 576x64). Each case is first checked against a float64 NumPy product."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.harness import check_close, measure, torch
from pyengine.backend.device import _cpu

SQUARE = [256, 512, 1024, 2048]
CONV = (25600, 576, 64)


def case(m: int, k: int, n: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    out = np.empty_like(c)

    def check() -> None:
        _cpu.gemm(a, b, c)
        check_close(f"gemm {m}x{k}x{n}", c, a.astype(np.float64) @ b.astype(np.float64))

    ta = tb = tc = None
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
    return measure(
        "gemm",
        (m, k, n),
        lambda: _cpu.gemm(a, b, c),
        check=check,
        numpy_fn=lambda: np.matmul(a, b, out=out),
        torch_fn=(lambda: torch.matmul(ta, tb, out=tc)) if torch is not None else None,
        flops=2.0 * m * k * n,
        repeats=repeats,
    )


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = SQUARE[:2] if quick else SQUARE
    rows = [case(n, n, n, 3 if quick else 10) for n in sizes]
    m, k, n = (2560, 576, 64) if quick else CONV
    rows.append(case(m, k, n, 3 if quick else 10))
    return rows
