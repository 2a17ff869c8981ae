"""The CPU-only elementwise maps of issue 13 (csrc/elementwise.cpp: math_forward, where_forward):
clamp (clamp_forward, one pass), where and sin, outputs preallocated, against NumPy and PyTorch.
GB/s counts float32 (or bool) streams of N elements: clamp 2, where 3 floats + 1 byte, sin 2."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.harness import check_close, measure, torch
from pyengine.backend.device import _cpu


def run(quick: bool) -> list[dict[str, Any]]:
    n = 1 << 20 if quick else 1 << 22
    reps = 5 if quick else 15
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(n, dtype=np.float32) for _ in range(2))
    c = a > b
    y, out = np.empty_like(a), np.empty_like(a)
    ta, tb, tc, tout = (None,) * 4
    if torch is not None:
        ta, tb, tc, tout = (torch.from_numpy(v) for v in (a, b, c, out))

    def clamp() -> None:
        _cpu.clamp_forward(a, y, -0.5, 0.5)

    def clamp_check() -> None:
        clamp()
        check_close("clamp", y, np.clip(a, -0.5, 0.5).astype(np.float64))

    def where_check() -> None:
        _cpu.where_forward(c, a, b, y)
        check_close("where", y, np.where(c, a, b).astype(np.float64))

    def sin_check() -> None:
        _cpu.math_forward("sin", a, y)
        check_close("sin", y, np.sin(a.astype(np.float64)))

    rows = [
        measure(
            "clamp fwd (kernel)",
            (n,),
            clamp,
            check=clamp_check,
            numpy_fn=lambda: np.clip(a, -0.5, 0.5, out=out),
            torch_fn=(lambda: torch.clamp(ta, -0.5, 0.5, out=tout)) if torch else None,
            nbytes=2 * 4 * n,
            repeats=reps,
        ),
        measure(
            "where fwd (kernel)",
            (n,),
            lambda: _cpu.where_forward(c, a, b, y),
            check=where_check,
            numpy_fn=lambda: np.copyto(out, np.where(c, a, b)),
            torch_fn=(lambda: torch.where(tc, ta, tb, out=tout)) if torch else None,
            nbytes=(3 * 4 + 1) * n,
            repeats=reps,
        ),
        measure(
            "sin fwd (kernel)",
            (n,),
            lambda: _cpu.math_forward("sin", a, y),
            check=sin_check,
            numpy_fn=lambda: np.sin(a, out=out),
            torch_fn=(lambda: torch.sin(ta, out=tout)) if torch else None,
            nbytes=2 * 4 * n,
            repeats=reps,
        ),
    ]
    return rows
