"""``torch_check``: run one computation in pyengine and in PyTorch (both float32) on the same
inputs and the same random upstream gradient, and compare outputs and input gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from opcheck import _assert_close

import pyengine as pe


def torch_check(
    torch: Any,
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    torch_fn: Callable[..., Any] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """``fn(*tensors)`` runs on pyengine tensors, ``torch_fn`` (default ``fn``) on torch tensors.
    Float arrays in ``inputs`` become float32 tensors requiring grad; integer arrays become int64
    tensors; anything else passes through."""

    def run(lib: Any, f: Callable[..., Any]) -> tuple[list[np.ndarray], list[Any]]:
        ts = []
        for a in inputs:
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                ts.append(lib.tensor(a.astype(np.float32), requires_grad=True))
            elif isinstance(a, np.ndarray):
                ts.append(lib.tensor(a.astype(np.int64)))
            else:
                ts.append(a)
        out = f(*ts)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        rng = np.random.default_rng(seed)
        loss = None
        for o in outs:
            if not o.requires_grad:
                continue
            w = lib.tensor(rng.standard_normal(tuple(o.shape)).astype(np.float32))
            term = (o * w).sum()
            loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        values = [np.asarray(o.detach().numpy()) for o in outs]
        grads = [
            t.grad.numpy() if getattr(t, "grad", None) is not None else None
            for t in ts
            if getattr(t, "requires_grad", False)
        ]
        return values, grads

    got_v, got_g = run(pe, fn)
    ref_v, ref_g = run(torch, torch_fn or fn)
    assert len(got_v) == len(ref_v)
    for i, (g, r) in enumerate(zip(got_v, ref_v)):
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r, err_msg=f"output {i}")
        else:
            _assert_close(f"output {i} vs torch", g, r.astype(np.float64), atol, rtol)
    for i, (g, r) in enumerate(zip(got_g, ref_g)):
        assert (g is None) == (r is None), f"input {i}: gradient presence differs from torch"
        if r is not None:
            _assert_close(f"grad of input {i} vs torch", g, r.astype(np.float64), atol, rtol)
