"""``check_op``: one helper that tests an op on a device against the float64 NumPy twin.

The op runs twice: once on float32 tensors on the device under test (the C++ or CUDA kernels), once
on float64 CPU tensors (the NumPy twin in pyengine/backend/numpy_ref). The forward outputs and the
gradient of every floating input, for the same random upstream gradient, must agree within
``atol + rtol * |reference|``. The twin's backward formulas are themselves verified by ``gradcheck``
(float64 central differences), so float32 finite differences are never needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import pyengine as pe


def _assert_close(name: str, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> None:
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        rows = ", ".join(
            f"{tuple(int(v) for v in i)}: {got[tuple(i)]:.7g} vs {ref[tuple(i)]:.7g}" for i in idx
        )
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.size} elements differ (max abs err "
            f"{err.max():.3g}); first: {rows}"
        )


def check_op(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    device: str = "cpu",
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> None:
    """``inputs``: NumPy arrays (float arrays become tensors that require grad, integer arrays
    plain tensors) or other values passed through unchanged."""

    def run(dtype: Any, dev: str) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        ts = []
        for a in inputs:
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                ts.append(pe.tensor(a.astype(dtype), device=dev, requires_grad=True))
            elif isinstance(a, np.ndarray):
                ts.append(pe.tensor(a, device=dev))
            else:
                ts.append(a)
        out = fn(*ts)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        rng = np.random.default_rng(seed)
        loss = None
        for o in outs:
            if o.dtype.kind != "f" or not o.requires_grad:
                continue
            w = pe.tensor(rng.standard_normal(o.shape).astype(dtype), device=dev)
            term = (o * w).sum()
            loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        values = [o.detach().cpu().numpy() for o in outs]
        grads = [
            (t.grad.cpu().numpy() if t.grad is not None else None)
            if isinstance(t, pe.Tensor) and t.requires_grad
            else None
            for t in ts
        ]
        return values, grads

    got_v, got_g = run(np.float32, device)
    ref_v, ref_g = run(np.float64, "cpu")
    for i, (g, r) in enumerate(zip(got_v, ref_v)):
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r, err_msg=f"output {i}")
        else:
            _assert_close(f"output {i}", g, r, atol, rtol)
    for i, (g, r) in enumerate(zip(got_g, ref_g)):
        if r is None:
            assert g is None, f"input {i}: unexpected gradient"
            continue
        assert g is not None, f"input {i}: gradient missing"
        _assert_close(f"grad of input {i}", g, r, atol, rtol)
