"""GEMM: pyengine's C++ sgemm kernel (called directly, output preallocated) against NumPy's BLAS
and PyTorch on square products and the im2col shape of a 3x3x64 conv on a 160x160 image batch
(25600x576 @ 576x64); then the user's ``a @ b`` (each library allocating its output: pyengine's
Tensor through autograd's Function, NumPy's ndarray, PyTorch's tensor) on small squares, where
1x1x1 measures the per-call cost of the Python path alone. Each case is first checked against a
float64 NumPy product, then each library is timed in a process of its own (harness.isolated_ms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.harness import check_close, isolated_ms, row, torch
from pyengine.backend.device import _cpu

SQUARE = [256, 512, 1024, 2048]
CONV = (25600, 576, 64)
MATMUL = [1, 256, 512]


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


def work_matmul(lib: str, m: int, k: int, n: int) -> Callable[[], object]:
    """``a @ b`` in ``lib``'s own process, the output allocated by each call."""
    a, b, _ = _operands(m, k, n)
    if lib == "pyengine":
        import pyengine as pe

        ta, tb = pe.tensor(a), pe.tensor(b)
        return lambda: ta @ tb
    if lib == "numpy":
        return lambda: a @ b
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: ta @ tb


def matmul_case(n: int, repeats: int) -> dict[str, Any]:
    import pyengine as pe

    a, b, _ = _operands(n, n, n)
    got = (pe.tensor(a) @ pe.tensor(b)).numpy()
    check_close(f"matmul {n}^3", got, a.astype(np.float64) @ b.astype(np.float64))
    ms = {
        lib: isolated_ms("benchmarks.bench_gemm:work_matmul", n, n, n, lib=lib, repeats=repeats)
        for lib in ("pyengine", "numpy", *(("torch",) if torch is not None else ()))
    }
    return row(
        "matmul a @ b",
        (n, n, n),
        ms["pyengine"],
        flops=2.0 * n**3,
        numpy_ms=ms["numpy"],
        torch_ms=ms.get("torch"),
    )


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

    def reps(n: int) -> int:
        # A sub-millisecond call varies by tens of percent from call to call (timer interrupts,
        # the worker's wake-up): its median needs a few hundred samples (capped at ~3 s).
        return (20 if quick else 300) if n <= 512 else (3 if quick else 10)

    rows = [case(n, n, n, reps(n)) for n in sizes]
    m, k, n = (2560, 576, 64) if quick else CONV
    rows.append(case(m, k, n, 3 if quick else 10))
    rows += [matmul_case(n, reps(n)) for n in MATMUL]
    return rows
