"""GEMM: pyengine's C++ sgemm kernel (called directly, output preallocated) against NumPy's BLAS
and PyTorch on square products and the im2col shape of a 3x3x64 conv on a 160x160 image batch
(25600x576 @ 576x64). Each case is first checked against a float64 NumPy product, then each
library is timed in a process of its own (harness.isolated_ms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.harness import check_close, isolated_ms, row, torch
from pyengine.backend.device import _cpu

SQUARE = [256, 512, 1024, 2048]
CONV = (25600, 576, 64)


def _operands(m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    return a, b, np.empty((m, n), np.float32)


def work(lib: str, m: int, k: int, n: int) -> Callable[[], object]:
    """The product to time in ``lib``'s own process, output preallocated."""
    a, b, c = _operands(m, k, n)
    if lib == "pyengine":
        return lambda: _cpu.gemm(a, b, c)
    if lib == "numpy":
        return lambda: np.matmul(a, b, out=c)
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
    return lambda: torch.matmul(ta, tb, out=tc)


def case(m: int, k: int, n: int, repeats: int) -> dict[str, Any]:
    a, b, c = _operands(m, k, n)
    _cpu.gemm(a, b, c)
    check_close(f"gemm {m}x{k}x{n}", c, a.astype(np.float64) @ b.astype(np.float64))
    ms = {
        lib: isolated_ms("benchmarks.bench_gemm:work", m, k, n, lib=lib, repeats=repeats)
        for lib in ("pyengine", "numpy", *(("torch",) if torch is not None else ()))
    }
    return row(
        "gemm",
        (m, k, n),
        ms["pyengine"],
        flops=2.0 * m * k * n,
        numpy_ms=ms["numpy"],
        torch_ms=ms.get("torch"),
    )


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = SQUARE[:2] if quick else SQUARE
    rows = [case(n, n, n, 3 if quick else 10) for n in sizes]
    m, k, n = (2560, 576, 64) if quick else CONV
    rows.append(case(m, k, n, 3 if quick else 10))
    return rows
