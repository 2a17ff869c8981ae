"""A NumPy stand-in for the ``_cuda`` extension, so ``CUDABackend`` runs without a GPU.

It implements the device primitives of ``cuda/array.cu`` (empty, from_numpy, strided_copy,
strided_fill, gather, scatter, cast, copy_, random) on flat host buffers with the same argument
conventions, and forwards kernel names to the NumPy twin on views of those buffers. Tests then
drive the real ``CUDABackend`` layout logic (views, indexing, cat, broadcasting) through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine.backend import numpy_ref


class FakeArray:
    def __init__(self, buf: np.ndarray, offset: int, shape: tuple[int, ...]) -> None:
        self.buf, self.offset, self.shape = buf, offset, tuple(int(s) for s in shape)

    @property
    def dtype(self) -> np.dtype:
        return self.buf.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def view(self) -> np.ndarray:
        return self.buf[self.offset : self.offset + self.size].reshape(self.shape)

    def numpy(self) -> np.ndarray:
        return self.view().copy()

    def reshape(self, shape: tuple[int, ...]) -> FakeArray:
        if int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape {self.shape} to {shape}")
        return FakeArray(self.buf, self.offset, shape)

    def __getitem__(self, i: int) -> FakeArray:
        inner = int(np.prod(self.shape[1:], dtype=np.int64))
        return FakeArray(self.buf, self.offset + i * inner, self.shape[1:])


def _strided(a: FakeArray, offset: int, strides: Any, shape: Any) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    if n:
        span = [(s - 1) * st for s, st in zip(shape, strides)]
        lo = offset + sum(x for x in span if x < 0)
        hi = offset + sum(x for x in span if x > 0)
        if lo < 0 or hi >= a.size:
            raise ValueError("strided view falls outside the array")
    base = a.buf[a.offset + offset :] if n else a.buf
    item = a.buf.itemsize
    return np.lib.stride_tricks.as_strided(
        base, shape=tuple(shape), strides=tuple(s * item for s in strides)
    )


class FakeCuda:
    Array = FakeArray

    def empty(self, shape: tuple[int, ...], dtype: Any) -> FakeArray:
        n = int(np.prod(shape, dtype=np.int64))
        buf = np.empty(n, np.dtype(dtype))
        if buf.dtype.kind == "f":
            buf.fill(np.nan)  # uninitialised memory must never leak into results
        return FakeArray(buf, 0, shape)

    def from_numpy(self, a: np.ndarray) -> FakeArray:
        return FakeArray(np.ascontiguousarray(a).reshape(-1).copy(), 0, a.shape)

    def fill(self, dst: FakeArray, value: float) -> None:
        dst.view()[...] = value

    def copy_(self, dst: FakeArray, src: FakeArray) -> None:
        assert dst.dtype == src.dtype and dst.size == src.size
        dst.view()[...] = src.view().reshape(dst.shape)

    def cast(self, x: FakeArray, out: FakeArray) -> None:
        out.view()[...] = x.view().astype(out.dtype).reshape(out.shape)

    def strided_copy(
        self, src, src_offset, src_strides, dst, dst_offset, dst_strides, shape, accumulate=False
    ) -> None:
        assert src.dtype == dst.dtype
        s = _strided(src, src_offset, src_strides, shape).copy()
        d = _strided(dst, dst_offset, dst_strides, shape)
        if accumulate:
            d += s
        else:
            d[...] = s

    def strided_fill(self, dst, offset, strides, shape, value) -> None:
        _strided(dst, offset, strides, shape)[...] = value

    def gather(self, src: FakeArray, index: FakeArray, out: FakeArray) -> None:
        out.view()[...] = src.view().reshape(-1)[index.view()]

    def scatter(self, src: FakeArray, index: FakeArray, dst: FakeArray, accumulate=False) -> None:
        flat = dst.view().reshape(-1)
        if accumulate:
            np.add.at(flat, index.view().reshape(-1), src.view().reshape(-1))
        else:
            flat[index.view().reshape(-1)] = src.view().reshape(-1)

    def random(self, out: FakeArray, seed: int, normal: bool) -> None:
        g = np.random.default_rng(seed)
        out.view()[...] = g.standard_normal(out.shape) if normal else g.random(out.shape)

    def synchronize(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        fn = getattr(numpy_ref, name)  # AttributeError -> NotImplementedError in Kernels

        def kernel(*args: Any, **kwargs: Any) -> Any:
            return fn(*[a.view() if isinstance(a, FakeArray) else a for a in args], **kwargs)

        return kernel
