"""Layout ops: reshape, permute, indexing, concatenation, dtype and device moves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.backend import Device, backend
from pyengine.ops._util import check_int_indices, normalize_dim, require_tensor
from pyengine.tensor import Tensor


class Reshape(Function):
    def forward(self, x, shape: tuple[int, ...]):
        self.in_shape = x.shape
        return self.be.reshape(x, shape)

    def backward(self, g):
        return (self.be.reshape(g, self.in_shape),)

    def backward_graph(self, g):
        return (g.reshape(self.in_shape),)


def reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    n = x.numel()
    if shape.count(-1) > 1:
        raise ValueError(f"only one dimension can be inferred, got shape {shape}")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or n % known:
            raise ValueError(f"shape {shape} is invalid for input of size {n}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != n or any(s < 0 for s in shape):
        raise ValueError(f"shape {shape} is invalid for input of size {n} (shape {x.shape})")
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return x.reshape(1)
    s, e = normalize_dim(start_dim, x.ndim), normalize_dim(end_dim, x.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = x.shape[:s] + (int(np.prod(x.shape[s : e + 1], dtype=np.int64)),) + x.shape[e + 1 :]
    return reshape(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = normalize_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def squeeze(x: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """Drop size-1 dims: all of them, one, or a tuple of dims (others are left as they are)."""
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = {normalize_dim(d, x.ndim) for d in ((dim,) if isinstance(dim, int) else dim)}
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return x if shape == x.shape else reshape(x, shape)


class Permute(Function):
    def forward(self, x, dims: tuple[int, ...]):
        self.inverse = tuple(np.argsort(dims))
        return self.be.permute(x, dims)

    def backward(self, g):
        return (self.be.permute(g, self.inverse),)

    def backward_graph(self, g):
        return (g.permute(*(int(i) for i in self.inverse)),)


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    if len(dims) != x.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a tensor of {x.ndim} dims")
    d = tuple(normalize_dim(i, x.ndim) for i in dims)
    if sorted(d) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} are not a permutation")
    if d == tuple(range(x.ndim)):
        return x
    return Permute.apply(x, dims=d)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    d = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim), normalize_dim(dim1, x.ndim)
    d[a], d[b] = d[b], d[a]
    return permute(x, d)


class Expand(Function):
    def forward(self, x, shape: tuple[int, ...]):
        self.in_shape = x.shape
        out = self.be.empty(shape, x.dtype)
        self.k.binary_forward("add", x, self.be.scalar(0.0, x.dtype), out)
        return out

    def backward(self, g):
        from pyengine.ops._util import sum_to

        return (sum_to(self, g, self.in_shape),)

    def backward_graph(self, g):
        from pyengine.ops.index import sum_to_tensor

        return (sum_to_tensor(g, self.in_shape),)


def expand(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: target shape {shape} has fewer dims than {x.shape}")
    full = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    try:
        if np.broadcast_shapes(x.shape, full) != full:
            raise ValueError
    except ValueError:
        raise ValueError(f"expand: shape {x.shape} cannot be expanded to {shape}") from None
    return Expand.apply(x, shape=full)


def _check_index(index: Any, shape: tuple[int, ...]) -> Any:
    check_int_indices(index)
    idx = index if isinstance(index, tuple) else (index,)
    out = []
    for i in idx:
        if isinstance(i, Tensor):
            if i.dtype.kind not in "iub":
                raise IndexError(f"tensors used as indices must be integer or bool, got {i.dtype}")
            i = i.numpy()
        out.append(i)
    return tuple(out)


class GetItem(Function):
    def forward(self, x, index: Any):
        self.in_shape, self.index = x.shape, index
        try:
            return self.be.getitem(x, index)
        except IndexError as e:
            raise IndexError(f"{e} (tensor of shape {x.shape})") from None

    def backward(self, g):
        gx = self.be.full(self.in_shape, 0.0, g.dtype)
        self.be.index_add(gx, self.index, g)
        return (gx,)

    def backward_graph(self, g):
        return (IndexAddZeros.apply(g, shape=self.in_shape, index=self.index),)


class IndexAddZeros(Function):
    """zeros(shape) with g added at index: GetItem's backward as a node (double backward)."""

    def forward(self, g, shape: tuple[int, ...], index: Any):
        self.index = index
        gx = self.be.full(shape, 0.0, g.dtype)
        self.be.index_add(gx, index, g)
        return gx

    def backward(self, gg):
        return (self.be.getitem(gg, self.index),)

    def backward_graph(self, gg):
        return (gg[self.index],)


def getitem(x: Tensor, index: Any) -> Tensor:
    index = _check_index(index, x.shape)
    if x.dtype.kind != "f":
        return Tensor._wrap(backend(x.device).getitem(x._data, index), x.device)
    return GetItem.apply(x, index=index)


class Cat(Function):
    def forward(self, *xs, dim: int):
        self.sizes = [x.shape[dim] for x in xs]
        self.dim = dim
        return self.be.cat(list(xs), dim)

    def backward(self, g):
        out, start = [], 0
        for size, need in zip(self.sizes, self.needs_input_grad):
            sl = (slice(None),) * self.dim + (slice(start, start + size),)
            out.append(self.be.getitem(g, sl) if need else None)
            start += size
        return tuple(out)

    def backward_graph(self, g):
        out, start = [], 0
        for size, need in zip(self.sizes, self.needs_input_grad):
            sl = (slice(None),) * self.dim + (slice(start, start + size),)
            out.append(g[sl] if need else None)
            start += size
        return tuple(out)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat() expects a non-empty list of tensors")
    for i, t in enumerate(tensors):
        require_tensor(t, f"tensors[{i}]", "cat")
    ref = tensors[0]
    d = normalize_dim(dim, ref.ndim)
    for t in tensors[1:]:
        if t.ndim != ref.ndim or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d
        ):
            raise ValueError(
                f"cat: sizes of tensors must match except in dimension {d}; got {ref.shape} and "
                f"{t.shape}"
            )
    if ref.dtype.kind != "f":
        be = backend(ref.device)
        return Tensor._wrap(be.cat([t._data for t in tensors], d), ref.device)
    return Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack() expects a non-empty list of tensors")
    for i, t in enumerate(tensors):
        require_tensor(t, f"tensors[{i}]", "stack")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack expects each tensor to be equal size, got {tensors[0].shape} and {t.shape}"
            )
    d = normalize_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


class Cast(Function):
    def forward(self, x, dtype: np.dtype):
        self.in_dtype = x.dtype
        return self.be.astype(x, dtype)

    def backward(self, g):
        return (self.be.astype(g, self.in_dtype),)

    def backward_graph(self, g):
        return (g.to(self.in_dtype),)


def cast(x: Tensor, dtype: np.dtype) -> Tensor:
    if x.dtype.kind == "f" and np.dtype(dtype).kind == "f":
        return Cast.apply(x, dtype=dtype)
    return Tensor._wrap(backend(x.device).astype(x._data, dtype), x.device)


class ToDevice(Function):
    """Copy through host memory; the gradient travels back the same way."""

    def forward(self, x, device: Device):
        self.dst = backend(device)
        return self.dst.from_numpy(self.be.to_numpy(x))

    def backward(self, g):
        return (self.be.from_numpy(self.dst.to_numpy(g)),)


def to_device(x: Tensor, device: Device) -> Tensor:
    if device.type == "cuda":
        from pyengine import cuda

        if not cuda.is_available():
            raise RuntimeError(
                "cannot move a tensor to 'cuda': no CUDA device is available "
                f"({cuda.unavailable_reason()})"
            )
    out = ToDevice.apply(x, device=device)
    out.device = device
    return out


class Clone(Function):
    def forward(self, x):
        return self.be.copy(x)

    def backward(self, g):
        return (g,)

    def backward_graph(self, g):
        return (g,)


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)
