"""Selection and rearrangement ops: index_put (``x[i] = v``), where, masked_fill, flip, roll,
repeat, split/chunk/unbind, sort/topk, cumsum.

``where`` (and so ``masked_fill``) runs on the ``where_forward`` kernel (csrc/elementwise.cpp,
CPU only: a cuda tensor gets the device layer's NotImplementedError). The others move elements
rather than compute on them, so like the layout ops of shape.py they run on the device's arrays
through NumPy: on the CPU ``to_numpy``/``from_numpy`` are the identity, elsewhere they cost a
host round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.ops._util import normalize_dim, sum_to
from pyengine.tensor import Tensor


def _np(ctx: Any, a: Any) -> np.ndarray:
    return ctx.be.to_numpy(a)


def _dev(ctx: Any, a: np.ndarray) -> Any:
    return ctx.be.from_numpy(np.asarray(a, order="C"))


def sum_to_tensor(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Differentiable inverse of broadcasting (Tensor version of _util.sum_to)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1
    )
    return g.sum(dims, keepdim=True).reshape(shape) if dims else g.reshape(shape)


class IndexPut(Function):
    """out = x with out[index] = value (value broadcast to the selection)."""

    def forward(self, x, value, index: Any):
        self.index = index
        self.vshape = tuple(getattr(value, "shape", ()))
        out = self.be.copy(x)
        self.be.setitem(out, index, value)
        return out

    def backward(self, g):
        gx = gv = None
        if self.needs_input_grad[0]:
            gx = self.be.copy(g)
            self.be.setitem(gx, self.index, 0.0)
        if self.needs_input_grad[1]:
            gv = sum_to(self, self.be.getitem(g, self.index), self.vshape)
        return gx, gv

    def backward_graph(self, g):
        gx = index_put(g, self.index, 0.0) if self.needs_input_grad[0] else None
        gv = sum_to_tensor(g[self.index], self.vshape) if self.needs_input_grad[1] else None
        return gx, gv


def index_put(x: Tensor, index: Any, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        value = value.to(x.device).to(x.dtype)
    elif value is None:
        raise TypeError("cannot assign None to a tensor element")
    try:
        return IndexPut.apply(x, value, index=index)
    except (ValueError, IndexError) as e:
        raise type(e)(f"{e} (assigning into a tensor of shape {x.shape})") from None


class Where(Function):
    """out = a where cond else b (csrc/elementwise.cpp where_forward, broadcasting cond, a and b).
    cond, a bool device array, is a parameter rather than an input, so that autograd's dtype
    check sees only a and b."""

    def forward(self, a, b, cond: Any):
        self.cond = cond
        self.save_for_backward(cond)  # so that an in-place change of the mask is caught
        self.shapes = (a.shape, b.shape)
        shape = tuple(np.broadcast_shapes(cond.shape, a.shape, b.shape))
        out = self.be.empty(shape, a.dtype)
        self.k.where_forward(cond, a, b, out)
        return out

    def backward(self, g):
        zero = self.be.scalar(0.0, g.dtype)
        sa, sb = self.shapes
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = self.be.empty(g.shape, g.dtype)
            self.k.where_forward(self.cond, g, zero, ga)
            ga = sum_to(self, ga, sa)
        if self.needs_input_grad[1]:
            gb = self.be.empty(g.shape, g.dtype)
            self.k.where_forward(self.cond, zero, g, gb)
            gb = sum_to(self, gb, sb)
        return ga, gb

    def backward_graph(self, g):
        c = Tensor._wrap(self.cond, g.device)
        sa, sb = self.shapes
        zero = g.new_zeros(())
        ga = sum_to_tensor(where(c, g, zero), sa) if self.needs_input_grad[0] else None
        gb = sum_to_tensor(where(c, zero, g), sb) if self.needs_input_grad[1] else None
        return ga, gb


def where(condition: Tensor, input: Any = None, other: Any = None) -> Any:  # noqa: A002
    """``where(cond, a, b)`` picks a where cond is true, else b (broadcast); ``where(cond)`` is
    ``nonzero(cond, as_tuple=True)``."""
    from pyengine.ops.elementwise import _operands

    if input is None and other is None:
        return tuple(Tensor(i) for i in np.nonzero(condition.detach().numpy()))
    if not isinstance(condition, Tensor) or condition.dtype != np.bool_:
        raise TypeError(
            "where expected condition to be a boolean tensor, got "
            f"{getattr(condition, 'dtype', type(condition).__name__)}"
        )
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor(input, device=condition.device)  # noqa: A001
        if input.dtype.kind == "f":
            input = input.float()  # noqa: A001  (Python floats -> the default dtype)
    a, b = _operands(input, other)
    if a.dtype.kind != "f":
        c, an, bn = condition.numpy(), a.numpy(), b.numpy()
        return Tensor(np.where(c, an, bn), device=a.device)
    try:
        np.broadcast_shapes(condition.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: condition {condition.shape}, input {a.shape} and other {b.shape} cannot be "
            "broadcast together"
        ) from None
    return Where.apply(a, b, cond=condition.to(a.device)._data)


def masked_fill(x: Tensor, mask: Tensor, value: Any) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != np.bool_:
        raise TypeError(f"masked_fill expects a bool mask, got {getattr(mask, 'dtype', mask)}")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(
            f"masked_fill only supports a 0-dimensional value tensor, got {value.ndim} dims"
        )
    if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise RuntimeError(f"masked_fill: mask of shape {mask.shape} does not fit {x.shape}")
    v = value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=x.dtype))
    return where(mask, v.to(x.dtype), x)


class Flip(Function):
    def forward(self, x, dims: tuple[int, ...]):
        self.dims = dims
        return _dev(self, np.flip(_np(self, x), dims))

    def backward(self, g):
        return (_dev(self, np.flip(_np(self, g), self.dims)),)

    def backward_graph(self, g):
        return (flip(g, self.dims),)


def flip(x: Tensor, dims: Any) -> Tensor:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    d = tuple(normalize_dim(i, x.ndim) for i in dims)
    if len(set(d)) != len(d):
        raise RuntimeError(f"flip: dims {dims} appear multiple times")
    if x.ndim == 0:
        return x.clone() if x.dtype.kind == "f" else Tensor(x.numpy(), device=x.device)
    if x.dtype.kind != "f":
        return Tensor(np.flip(x.numpy(), d), device=x.device)
    return Flip.apply(x, dims=d)


class Roll(Function):
    def forward(self, x, shifts: Any, dims: Any):
        self.shifts, self.dims = shifts, dims
        return _dev(self, np.roll(_np(self, x), shifts, dims))

    def backward(self, g):
        neg = tuple(-s for s in self.shifts) if self.dims is not None else -self.shifts
        return (_dev(self, np.roll(_np(self, g), neg, self.dims)),)

    def backward_graph(self, g):
        neg = tuple(-s for s in self.shifts) if self.dims is not None else -self.shifts
        return (roll(g, neg, self.dims),)


def roll(x: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    if dims is None:
        s = shifts if isinstance(shifts, int) else tuple(shifts)
        if not isinstance(s, int):
            if len(s) != 1:
                raise RuntimeError("roll: shifts and dims must align (dims=None takes one shift)")
            s = s[0]
        if x.dtype.kind != "f":
            return Tensor(np.roll(x.numpy(), s), device=x.device)
        return Roll.apply(x, shifts=int(s), dims=None)
    sh = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dm = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(sh) != len(dm):
        raise RuntimeError(f"roll: shifts {sh} and dims {dm} must have the same length")
    dm = tuple(normalize_dim(d, x.ndim) for d in dm)
    if x.dtype.kind != "f":
        return Tensor(np.roll(x.numpy(), sh, dm), device=x.device)
    return Roll.apply(x, shifts=tuple(int(v) for v in sh), dims=dm)


def repeat(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """torch.Tensor.repeat: tile x ``sizes`` times (sizes may add leading dims)."""
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions "
            f"of tensor ({len(sizes)} < {x.ndim})"
        )
    if any(s < 0 for s in sizes):
        raise RuntimeError(f"repeat: negative repeat count in {sizes}")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    # Tile by expanding an interleaved singleton axis per dim, then merging: (r0,s0,r1,s1,...).
    y = x.reshape(tuple(v for s in shape for v in (1, s)))
    y = y.expand(tuple(v for r, s in zip(sizes, shape) for v in (r, s)))
    return y.reshape(tuple(r * s for r, s in zip(sizes, shape)))


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    d = normalize_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and n > 0:
            raise RuntimeError(f"split expects split_size be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)] if n else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's "
                f"size at dimension {d}), but got split_sizes={sizes}"
            )
    out, start = [], 0
    for s in sizes:
        out.append(x[(slice(None),) * d + (slice(start, start + s),)])
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = x.shape[normalize_dim(dim, x.ndim)]
    return split(x, max(-(-n // chunks), 1), dim)


def unbind(x: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    d = normalize_dim(dim, x.ndim)
    return tuple(x[(slice(None),) * d + (i,)] for i in range(x.shape[d]))


class TakeAlong(Function):
    """out = take_along_axis(x, idx, dim); the gradient scatters back (idx is a permutation or a
    subset of each row, so no two outputs share an input)."""

    def forward(self, x, idx, dim: int):
        self.idx, self.dim, self.shape = idx, dim, x.shape
        return _dev(self, np.take_along_axis(_np(self, x), _np(self, idx), dim))

    def backward(self, g):
        gx = np.zeros(self.shape, dtype=g.dtype)
        np.put_along_axis(gx, _np(self, self.idx), _np(self, g), self.dim)
        return _dev(self, gx), None

    def backward_graph(self, g):
        return PutAlong.apply(g, idx=self.idx, dim=self.dim, shape=self.shape), None


class PutAlong(Function):
    """zeros(shape) with g put at idx along dim: TakeAlong's backward as a node."""

    def forward(self, g, idx: Any, dim: int, shape: tuple[int, ...]):
        self.idx, self.dim = idx, dim
        out = np.zeros(shape, dtype=g.dtype)
        np.put_along_axis(out, _np(self, idx), _np(self, g), dim)
        return _dev(self, out)

    def backward(self, gg):
        return (_dev(self, np.take_along_axis(_np(self, gg), _np(self, self.idx), self.dim)),)

    def backward_graph(self, gg):
        return (TakeAlong.apply(gg, Tensor._wrap(self.idx, gg.device), dim=self.dim),)


def _desc(a: np.ndarray, dim: int) -> np.ndarray:
    # Stable descending order: a stable sort of the negated keys keeps ties in input order. NaN
    # counts as the largest value (first), as in torch.sort; it ties with +inf here.
    if a.dtype == np.bool_:
        key = ~a
    else:
        key = -a.astype(np.float64)
        if a.dtype.kind == "f":
            key = np.where(np.isnan(a), -np.inf, key)
    return np.argsort(key, axis=dim, kind="stable")


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    from pyengine.ops.reduce import SortResult

    d = normalize_dim(dim, x.ndim)
    a = x.detach().numpy() if x.ndim else x.detach().numpy().reshape(1)
    idx = _desc(a, d) if descending else np.argsort(a, axis=d, kind="stable")
    if not x.ndim:
        idx = idx.reshape(())
        return SortResult(x.clone(), Tensor(idx))
    ind = Tensor(idx.astype(np.int64), device=x.device)
    if x.dtype.kind != "f":
        return SortResult(Tensor(np.take_along_axis(a, idx, d), device=x.device), ind)
    return SortResult(TakeAlong.apply(x, ind, dim=d), ind)


def topk(
    x: Tensor,
    k: int,
    dim: int = -1,
    largest: bool = True,
    sorted: bool = True,  # noqa: A002
) -> Any:
    from pyengine.ops.reduce import SortResult

    d = normalize_dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {d} of size {n}")
    values, indices = sort(x, d, descending=largest)
    sl = (slice(None),) * d + (slice(0, k),)
    return SortResult(values[sl], indices[sl])


class Cumsum(Function):
    def forward(self, x, dim: int):
        self.dim = dim
        return _dev(self, np.cumsum(_np(self, x), axis=dim, dtype=x.dtype))

    def backward(self, g):
        gn = np.flip(np.cumsum(np.flip(_np(self, g), self.dim), axis=self.dim), self.dim)
        return (_dev(self, gn),)

    def backward_graph(self, g):
        return (flip(cumsum(flip(g, self.dim), self.dim), self.dim),)


def cumsum(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    d = normalize_dim(dim, x.ndim)
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype.kind != "f":
        a = x.numpy()
        return Tensor(np.cumsum(a, axis=d) if a.ndim else a.copy(), device=x.device)
    if x.ndim == 0:
        return x.clone()
    return Cumsum.apply(x, dim=d)
