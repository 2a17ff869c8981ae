"""Reductions beyond reduce.py: min/argmin, var/std, prod, norm, any/all.

min, var, std and norm compose the existing sum/max kernels (reduce.py) and elementwise ops, so
their gradients come from those nodes; prod has its own node (its gradient is the product of the
other elements, computed without dividing so that zeros are handled).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.ops import reduce
from pyengine.ops._util import normalize_dim
from pyengine.tensor import Tensor


def min(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """``min(x)``, ``min(x, dim)`` -> (values, indices), or ``min(a, b)`` (= minimum)."""
    if isinstance(dim, Tensor):
        from pyengine.ops.math import minimum

        return minimum(x, dim)
    if x.numel() == 0:
        raise RuntimeError("min(): expected a non-empty tensor")
    if x.dtype.kind != "f":
        a = x.numpy()
        if dim is None:
            return Tensor(a.min(), device=x.device)
        return reduce.MaxResult(
            Tensor(a.min(axis=dim, keepdims=keepdim), device=x.device),
            Tensor(a.argmin(axis=dim, keepdims=keepdim), device=x.device),
        )
    # max of -x picks the first minimum, as torch.min does on ties.
    res = reduce.max(-x, dim, keepdim)
    if dim is None:
        return -res
    return reduce.MaxResult(-res.values, res.indices)


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    if dim is None:
        return min(x.reshape(-1), 0).indices
    return min(x, dim, keepdim).indices


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    if dim is None:
        return reduce.max(x.reshape(-1), 0).indices
    return reduce.max(x, dim, keepdim).indices


def _correction(unbiased: Any, correction: Any) -> float:
    if correction is not None:
        if unbiased is not None:
            raise RuntimeError("var/std: pass only one of unbiased and correction")
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def var(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    """Variance over ``dim`` with Bessel's correction by default (``correction=1``), as torch.var;
    a non-positive ``N - correction`` gives inf/NaN as in PyTorch."""
    if isinstance(dim, bool):  # var(x, unbiased): the older positional form
        dim, unbiased = None, dim
    if x.dtype.kind != "f":
        raise RuntimeError(f"std and var only support floating point dtypes, got {x.dtype}")
    c = _correction(unbiased, correction)
    dims = reduce._dims(dim, x.ndim)
    n = int(np.prod([x.shape[d] for d in dims], dtype=np.int64))
    mu = reduce.mean(x, dims, keepdim=True) if n else x.sum(dims, keepdim=True)
    d = x - mu
    # As torch: N - correction is clamped at 0, so too few elements give inf or NaN.
    return (d * d).sum(dims, keepdim=keepdim) / builtins.max(n - c, 0.0)


def std(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()


class Prod(Function):
    """Product over one dim (x reshaped to (outer, D, inner))."""

    def forward(self, x, dim: int, keepdim: bool):
        self.dim, self.keepdim = dim, keepdim
        a = self.be.to_numpy(x)
        out = np.prod(a, axis=dim, keepdims=keepdim)
        if self.needs_input_grad[0]:
            self.save_for_backward(x)
        return self.be.from_numpy(np.asarray(out, order="C"))

    def backward(self, g):
        (x,) = self.saved
        a = self.be.to_numpy(x)
        d = self.dim
        gn = self.be.to_numpy(g)
        if not self.keepdim:
            gn = np.expand_dims(gn, d)
        # prod of the others = (exclusive cumprod from the left) * (from the right)
        ones = np.ones_like(np.take(a, [0], axis=d))
        left = np.cumprod(np.concatenate([ones, np.take(a, range(a.shape[d] - 1), axis=d)], d), d)
        rflip = np.flip(a, d)
        right = np.cumprod(
            np.concatenate([ones, np.take(rflip, range(a.shape[d] - 1), axis=d)], d), d
        )
        others = left * np.flip(right, d)
        return (self.be.from_numpy(np.asarray(gn * others, order="C")),)


def prod(x: Tensor, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype.kind != "f":
        a = x.numpy()
        out = a.prod() if dim is None else a.prod(axis=normalize_dim(dim, x.ndim), keepdims=keepdim)
        return Tensor(np.asarray(out, dtype=np.int64 if a.dtype.kind in "iub" else a.dtype))
    if dim is None:
        return Prod.apply(x.reshape(-1), dim=0, keepdim=False)
    if x.ndim == 0:
        return x.clone()
    return Prod.apply(x, dim=normalize_dim(dim, x.ndim), keepdim=keepdim)


def norm(x: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (all elements by default): p = 2/'fro', 1, inf, -inf, 0 or any
    float. The 2-norm's gradient at an all-zero input is NaN here (torch returns 0)."""
    if x.dtype.kind != "f":
        raise RuntimeError(f"norm(): input dtype should be floating point, got {x.dtype}")
    if p in ("fro", None):
        p = 2
    if p == "nuc":
        raise NotImplementedError("norm(p='nuc') (the nuclear norm) needs an SVD, not available")
    p = float(p)
    a = x.abs()
    if p == np.inf:
        return _amax(a, dim, keepdim)
    if p == -np.inf:
        return -_amax(-a, dim, keepdim)
    if p == 0:
        return (a != 0).to(x.dtype).sum(dim, keepdim)
    if p == 1:
        return a.sum(dim, keepdim)
    if p == 2:
        return (x * x).sum(dim, keepdim).sqrt()
    return (a**p).sum(dim, keepdim) ** (1.0 / p)


def _amax(x: Tensor, dim: Any, keepdim: bool) -> Tensor:
    if dim is None:
        out = reduce.max(x)
        return out.reshape((1,) * x.ndim) if keepdim else out
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = x
    for d in sorted((normalize_dim(v, x.ndim) for v in dims), reverse=True):
        out = reduce.max(out, d, keepdim=keepdim).values
    return out


def _logical(x: Tensor, dim: Any, keepdim: bool, fn: Any) -> Tensor:
    a = x.detach().numpy().astype(bool)
    axis = (
        None
        if dim is None
        else tuple(
            normalize_dim(d, max(x.ndim, 1)) for d in ((dim,) if isinstance(dim, int) else dim)
        )
    )
    if x.ndim == 0:
        axis = None
    return Tensor(np.asarray(fn(a, axis=axis, keepdims=keepdim and x.ndim > 0)), device=x.device)


def any(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return _logical(x, dim, keepdim, np.any)


def all(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return _logical(x, dim, keepdim, np.all)
