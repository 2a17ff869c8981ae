"""The CUDA backend: device arrays (``_cuda.Array``) with the same interface as ``CPUBackend``.

Arrays are C-contiguous buffers from the caching allocator in ``cuda/memory.cu``. Every layout
operation reduces to a few device primitives of ``cuda/array.cu``:

* basic indexing (ints, slices, None, Ellipsis) is a strided view (offset, shape, strides), which
  NumPy computes for us on a zero-byte stand-in array, followed by ``strided_copy`` (getitem,
  setitem, index_add, permute, cat and broadcasting are all strided copies);
* advanced indexing (integer or boolean arrays) becomes flat element indices computed on the host
  with NumPy, then ``gather`` / ``scatter`` on the device.

float32 ops run the CUDA kernels; other float dtypes (float64 gradient checks) run the NumPy twin
on host copies, so every op still works on the device, only slower.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine.backend import numpy_ref
from pyengine.backend.device import Kernels

_FLOAT32 = np.dtype("float32")


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    st, acc = [], 1
    for s in reversed(shape):
        st.append(acc)
        acc *= s
    return tuple(reversed(st))


def _broadcast_strides(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    """Strides that read an array of ``shape`` as if broadcast to ``target`` (0 on broadcast)."""
    if len(shape) > len(target) or any(
        s not in (1, t) for s, t in zip(reversed(shape), reversed(target))
    ):
        raise ValueError(f"could not broadcast input array from shape {shape} into shape {target}")
    st = _contiguous_strides(shape)
    lead = len(target) - len(shape)
    return (0,) * lead + tuple(0 if s == 1 else x for s, x in zip(shape, st))


def _is_basic(index: tuple[Any, ...]) -> bool:
    for i in index:
        if isinstance(i, (bool, np.bool_)):
            return False
        if not (isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis):
            return False
    return True


def _as_tuple(index: Any) -> tuple[Any, ...]:
    return index if isinstance(index, tuple) else (index,)


def _view(shape: tuple[int, ...], index: tuple[Any, ...]) -> tuple[int, tuple, tuple]:
    """(offset, shape, strides) in elements of ``a[index]`` for a basic index of a C-contiguous
    array of ``shape``, with NumPy's exact semantics and errors (it never reads the memory)."""
    stand_in = np.lib.stride_tricks.as_strided(
        np.zeros(1, np.uint8), shape=shape, strides=_contiguous_strides(shape)
    )
    if not any(i is Ellipsis for i in index):
        index = (*index, Ellipsis)  # keeps an all-integer index a 0-d view, not a scalar
    v = stand_in[index]
    base = stand_in.__array_interface__["data"][0]
    return v.__array_interface__["data"][0] - base, v.shape, v.strides


class _HostKernels:
    """The NumPy twin applied to host copies of device arrays, written back after the call."""

    def __init__(self, backend: CUDABackend) -> None:
        self._be = backend

    def __getattr__(self, name: str) -> Any:
        fn = getattr(numpy_ref, name, None)
        if fn is None:
            raise NotImplementedError(f"{name} has no numpy kernel")
        be, array_type = self._be, self._be.Array

        def run(*args: Any, **kwargs: Any) -> Any:
            host = [a.numpy() if isinstance(a, array_type) else a for a in args]
            result = fn(*host, **kwargs)
            for a, h in zip(args, host):
                if isinstance(a, array_type):
                    be._c.copy_(a, be.from_numpy(h))
            return result

        return run


class CUDABackend:
    """Device memory: arrays are ``_cuda.Array`` (C-contiguous, float32/float64/int64/...)."""

    name = "cuda"

    def __init__(self, module: Any) -> None:
        self._c = module
        self.Array = module.Array
        self.native = Kernels(module, "cuda")
        self.reference = _HostKernels(self)
        self._scalars: dict[tuple[float, str], Any] = {}

    def kernels(self, dtype: np.dtype) -> Any:
        return self.native if dtype == _FLOAT32 else self.reference

    # allocation and transfers
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self._c.empty(tuple(int(s) for s in shape), np.dtype(dtype))

    def full(self, shape: tuple[int, ...], value: float, dtype: np.dtype) -> Any:
        a = self.empty(shape, dtype)
        self._c.fill(a, float(value))
        return a

    def from_numpy(self, a: Any) -> Any:
        if isinstance(a, self.Array):
            return a
        a = np.asarray(a)
        # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
        return self._c.from_numpy(a if a.flags.c_contiguous else a.copy(order="C"))

    def to_numpy(self, a: Any) -> np.ndarray:
        if not isinstance(a, self.Array):
            raise TypeError(f"expected a CUDA array, got {type(a).__name__}")
        return a.numpy()

    def scalar(self, value: float, dtype: np.dtype) -> Any:
        # Kernels only read scalars, so each distinct one is uploaded once.
        key = (float(value), np.dtype(dtype).str)
        a = self._scalars.get(key)
        if a is None:
            if len(self._scalars) > 1024:
                self._scalars.clear()
            a = self._scalars[key] = self.from_numpy(np.asarray(value, dtype=dtype))
        return a

    # layout: every result is C-contiguous
    def reshape(self, a: Any, shape: tuple[int, ...]) -> Any:
        return a.reshape(tuple(int(s) for s in shape))

    def permute(self, a: Any, dims: tuple[int, ...]) -> Any:
        st = _contiguous_strides(a.shape)
        shape = tuple(a.shape[d] for d in dims)
        out = self.empty(shape, a.dtype)
        self._c.strided_copy(a, 0, [st[d] for d in dims], out, 0, _contiguous_strides(shape), shape)
        return out

    def _flat_index(self, a: Any, index: tuple[Any, ...]) -> np.ndarray:
        return np.arange(a.size, dtype=np.int64).reshape(a.shape)[index]

    def getitem(self, a: Any, index: Any) -> Any:
        index = _as_tuple(index)
        if _is_basic(index):
            off, shape, st = _view(a.shape, index)
            out = self.empty(shape, a.dtype)
            self._c.strided_copy(a, off, st, out, 0, _contiguous_strides(shape), shape)
            return out
        flat = self._flat_index(a, index)
        out = self.empty(flat.shape, a.dtype)
        self._c.gather(a, self.from_numpy(flat), out)
        return out

    def _values(self, values: Any, dtype: np.dtype) -> Any:
        if not isinstance(values, self.Array):
            return self.from_numpy(np.asarray(values, dtype=dtype))
        return values if values.dtype == dtype else self.astype(values, dtype)

    def _broadcast_to(self, values: Any, shape: tuple[int, ...]) -> Any:
        if tuple(values.shape) == tuple(shape):
            return values
        out = self.empty(shape, values.dtype)
        st = _broadcast_strides(tuple(values.shape), tuple(shape))
        self._c.strided_copy(values, 0, st, out, 0, _contiguous_strides(shape), shape)
        return out

    def _write(self, a: Any, index: Any, values: Any, accumulate: bool) -> None:
        index = _as_tuple(index)
        scalar = not accumulate and np.ndim(values) == 0 and not isinstance(values, self.Array)
        if _is_basic(index):
            off, shape, st = _view(a.shape, index)
            if scalar:
                self._c.strided_fill(a, off, st, shape, float(values))
                return
            v = self._values(values, a.dtype)
            bst = _broadcast_strides(tuple(v.shape), shape)
            self._c.strided_copy(v, 0, bst, a, off, st, shape, accumulate)
            return
        flat = self._flat_index(a, index)
        if scalar:
            v = self.full(flat.shape, float(values), a.dtype)
        else:
            v = self._broadcast_to(self._values(values, a.dtype), flat.shape)
        self._c.scatter(v, self.from_numpy(flat), a, accumulate)

    def index_add(self, out: Any, index: Any, values: Any) -> None:
        self._write(out, index, values, accumulate=True)

    def setitem(self, a: Any, index: Any, values: Any) -> None:
        self._write(a, index, values, accumulate=False)

    def cat(self, arrays: list[Any], dim: int) -> Any:
        ref = arrays[0]
        dtype = np.result_type(*[x.dtype for x in arrays])
        shape = list(ref.shape)
        shape[dim] = sum(x.shape[dim] for x in arrays)
        out = self.empty(tuple(shape), dtype)
        ost = _contiguous_strides(tuple(shape))
        start = 0
        for x in arrays:
            x = self._values(x, dtype)
            self._c.strided_copy(
                x, 0, _contiguous_strides(x.shape), out, start * ost[dim], ost, x.shape
            )
            start += x.shape[dim]
        return out

    def astype(self, a: Any, dtype: np.dtype) -> Any:
        out = self.empty(a.shape, dtype)
        if np.dtype(dtype) == a.dtype:
            self._c.copy_(out, a)
        else:
            self._c.cast(a, out)
        return out

    def copy(self, a: Any) -> Any:
        out = self.empty(a.shape, a.dtype)
        self._c.copy_(out, a)
        return out

    def copy_(self, dst: Any, src: Any) -> None:
        if isinstance(src, self.Array) and src.dtype == dst.dtype and src.shape == dst.shape:
            self._c.copy_(dst, src)
        else:
            self.setitem(dst, Ellipsis, src)

    def random(self, gen: np.random.Generator, kind: str, shape, dtype, **kw) -> Any:
        if kind not in ("normal", "uniform"):
            raise ValueError(kind)
        out = self.empty(shape, _FLOAT32)
        # The host generator picks the Philox key, so manual_seed makes device draws repeatable.
        self._c.random(out, int(gen.integers(0, 2**63 - 1)), kind == "normal")
        return out if np.dtype(dtype) == _FLOAT32 else self.astype(out, dtype)

    def synchronize(self) -> None:
        self._c.synchronize()
