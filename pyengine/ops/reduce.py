"""Reductions, softmax and NLL (csrc/reduce.cpp)."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.ops._util import normalize_dim, require_tensor
from pyengine.tensor import Tensor

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _dims(dim: Any, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    dims = tuple(sorted({normalize_dim(d, ndim) for d in dim}))
    return dims if ndim else ()  # a 0-d tensor accepts dim 0 / -1 and reduces nothing


def _outer_d_inner(shape: tuple[int, ...], dim: int) -> tuple[int, int, int]:
    outer = int(np.prod(shape[:dim], dtype=np.int64))
    inner = int(np.prod(shape[dim + 1 :], dtype=np.int64))
    return outer, shape[dim] if shape else 1, inner


class Sum(Function):
    def forward(self, x, dims: tuple[int, ...], keepdim: bool, scale: float = 1.0):
        self.in_shape = x.shape
        kshape = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
        out = self.be.empty(kshape, x.dtype)
        self.k.sum_reduce(x, out)
        if scale != 1.0:
            self.k.binary_forward("mul", out, self.be.scalar(scale, x.dtype), out)
        self.scale, self.kshape = scale, kshape
        if keepdim:
            return out
        return self.be.reshape(out, tuple(s for i, s in enumerate(x.shape) if i not in dims))

    def backward(self, g):
        g = self.be.reshape(g, self.kshape)
        gx = self.be.empty(self.in_shape, g.dtype)
        self.k.binary_forward("mul", g, self.be.scalar(self.scale, g.dtype), gx)
        return (gx,)

    def backward_graph(self, g):
        gx = g.reshape(self.kshape).expand(self.in_shape)
        return (gx * self.scale if self.scale != 1.0 else gx,)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    dims = _dims(dim, x.ndim)
    if x.dtype.kind != "f":
        return Tensor(x.numpy().sum(axis=dims, keepdims=keepdim), device=x.device)
    return Sum.apply(x, dims=dims, keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    if x.dtype.kind != "f":
        raise RuntimeError(f"mean(): input dtype should be floating point, got {x.dtype}")
    dims = _dims(dim, x.ndim)
    n = int(np.prod([x.shape[d] for d in dims], dtype=np.int64))
    if n == 0:
        raise RuntimeError(f"mean() of an empty selection of a tensor of shape {x.shape}")
    return Sum.apply(x, dims=dims, keepdim=keepdim, scale=1.0 / n)


class Max(Function):
    def forward(self, x, dim: int, keepdim: bool):
        shape = x.shape
        outer, D, inner = _outer_d_inner(shape, dim)
        if D == 0:
            raise RuntimeError(f"max(): cannot reduce over an empty dimension (shape {shape})")
        kshape = tuple(1 if i == dim else s for i, s in enumerate(shape))
        values = self.be.empty(kshape, x.dtype)
        indices = self.be.empty(kshape, np.dtype("int64"))
        self.k.max_reduce(x, values, indices, outer, D, inner)
        self.geom = (shape, outer, D, inner, kshape)
        if self.needs_input_grad[0]:
            self.save_for_backward(indices)
        if not keepdim:
            oshape = tuple(s for i, s in enumerate(shape) if i != dim)
            values = self.be.reshape(values, oshape)
            indices = self.be.reshape(indices, oshape)
        return values, indices

    def backward(self, g):
        (indices,) = self.saved
        shape, outer, D, inner, kshape = self.geom
        gx = self.be.empty(shape, g.dtype)
        self.k.max_reduce_backward(self.be.reshape(g, kshape), indices, gx, outer, D, inner)
        return (gx,)

    def backward_graph(self, g):
        # g routed to the arg-max: g (broadcast along the reduced dim) times a one-hot mask.
        (indices,) = self.saved
        shape, outer, D, inner, kshape = self.geom
        idx = self.be.to_numpy(indices).reshape(outer, 1, inner)
        onehot = (np.arange(D).reshape(1, D, 1) == idx).reshape(shape).astype(g.dtype)
        mask = Tensor._wrap(self.be.from_numpy(onehot), g.device)
        return (g.reshape(kshape) * mask,)


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:  # noqa: A001
    if x.numel() == 0:
        raise RuntimeError("max(): expected a non-empty tensor")
    if x.dtype.kind != "f":
        a = x.numpy()
        if dim is None:
            return Tensor(a.max(), device=x.device)
        return MaxResult(
            Tensor(a.max(axis=dim, keepdims=keepdim), device=x.device),
            Tensor(a.argmax(axis=dim, keepdims=keepdim), device=x.device),
        )
    if dim is None:
        values, _ = Max.apply(x.reshape(-1), dim=0, keepdim=False)
        return values
    values, indices = Max.apply(x, dim=normalize_dim(dim, x.ndim), keepdim=keepdim)
    return MaxResult(values, indices)


class Softmax(Function):
    def forward(self, x, dim: int, log: bool):
        self.dim = dim
        self.geom = (*_outer_d_inner(x.shape, dim), log)
        y = self.be.empty(x.shape, x.dtype)
        self.k.softmax_forward(x, y, *self.geom)
        if self.needs_input_grad[0]:
            self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        gx = self.be.empty(g.shape, g.dtype)
        self.k.softmax_backward(y, g, gx, *self.geom)
        return (gx,)

    def backward_graph(self, g):
        (x,) = self.inputs
        outer, D, inner, log = self.geom
        dim = self.dim
        if log:
            return (g - x.log_softmax(dim).exp() * g.sum(dim, keepdim=True),)
        y = x.softmax(dim)
        return (y * (g - (g * y).sum(dim, keepdim=True)),)


def _check_softmax_input(x: Any, op: str) -> None:
    require_tensor(x, "input", op)
    if x.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, got {x.dtype}")


def softmax(x: Tensor, dim: int) -> Tensor:
    _check_softmax_input(x, "softmax")
    return Softmax.apply(x, dim=normalize_dim(dim, x.ndim), log=False)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    _check_softmax_input(x, "log_softmax")
    return Softmax.apply(x, dim=normalize_dim(dim, x.ndim), log=True)


class NLL(Function):
    """Per-sample negative log-likelihood: out[n] = -logp[n, target[n]]."""

    def forward(self, logp, target):
        self.shape = logp.shape
        self.save_for_backward(target)
        out = self.be.empty((logp.shape[0],), logp.dtype)
        self.k.nll_forward(logp, target, out)
        return out

    def backward(self, g):
        (target,) = self.saved
        gx = self.be.empty(self.shape, g.dtype)
        self.k.nll_backward(g, target, gx)
        return gx, None

    def backward_graph(self, g):
        from pyengine.ops.index import index_put

        (target,) = self.saved
        n = self.shape[0]
        zeros = Tensor._wrap(self.be.full(self.shape, 0.0, g.dtype), g.device)
        rows = np.arange(n)
        return index_put(zeros, (rows, self.be.to_numpy(target)), -g), None


def nll(logp: Tensor, target: Tensor) -> Tensor:
    require_tensor(logp, "input", "nll_loss")
    require_tensor(target, "target", "nll_loss")
    if logp.ndim != 2:
        raise ValueError(f"expected log-probabilities of shape (N, C), got {logp.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer (class index) tensor, got dtype {target.dtype}")
    if target.shape != (logp.shape[0],):
        raise ValueError(
            f"target shape {target.shape} does not match input batch size {logp.shape[0]}"
        )
    if target.dtype != np.int64:
        target = target.long()
    return NLL.apply(logp, target)


SortResult = namedtuple("SortResult", ["values", "indices"])
