"""Helpers shared by the op modules."""

from __future__ import annotations

from typing import Any

import numpy as np


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...], op: str) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ValueError(f"{op}: shapes {a} and {b} cannot be broadcast together") from None


def sum_to(ctx: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """Reduce a broadcast gradient ``g`` back to ``shape`` (the inverse of broadcasting)."""
    if tuple(g.shape) == tuple(shape):
        return g
    keep = (1,) * (len(g.shape) - len(shape)) + tuple(shape)
    out = ctx.be.empty(keep, g.dtype)
    ctx.k.sum_reduce(g, out)
    return ctx.be.reshape(out, tuple(shape))


def require_tensor(x: Any, name: str, op: str) -> None:
    """PyTorch's TypeError for a non-tensor argument, before anything reads its attributes."""
    from pyengine.tensor import Tensor

    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")


def check_int_indices(index: Any) -> None:
    """IndexError for a Python int index beyond int64, which NumPy reports as OverflowError;
    such an index is out of bounds for any tensor."""
    for i in index if isinstance(index, tuple) else (index,):
        if isinstance(i, int) and not -(2**63) <= i < 2**63:
            raise IndexError(f"index {i} is out of bounds")


def normalize_dim(dim: int, ndim: int, name: str = "dim") -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n
