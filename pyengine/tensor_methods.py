"""Tensor methods that forward to the op modules (pyengine/ops/{math,stats,index}.py and the
factories), kept apart from tensor.py so that the core class stays small; ``Tensor`` inherits them.
Names, argument order and defaults are PyTorch's."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

import pyengine

if TYPE_CHECKING:
    from pyengine.tensor import Tensor


def _tmod() -> Any:
    # pyengine.tensor is also the name of the factory function, so reach the module directly.
    return sys.modules["pyengine.tensor"]


def _tensor() -> Any:
    return _tmod().Tensor


class TensorMethods:
    __slots__ = ()

    def __abs__(self) -> Tensor:
        return pyengine.ops.elementwise.abs(self)

    def __floordiv__(self, other: Any) -> Tensor:
        return pyengine.ops.math.floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return pyengine.ops.math.floor_divide(other, self)

    def __mod__(self, other: Any) -> Tensor:
        return pyengine.ops.math.remainder(self, other)

    def __rmod__(self, other: Any) -> Tensor:
        return pyengine.ops.math.remainder(other, self)

    def __rmatmul__(self, other: Any) -> Tensor:
        if isinstance(other, np.ndarray):
            other = _tensor()(other, device=self.device)
        return pyengine.ops.gemm.matmul(other, self)

    def neg(self) -> Tensor:
        return pyengine.ops.elementwise.neg(self)

    def sign(self) -> Tensor:
        return pyengine.ops.math.sign(self)

    def round(self, decimals: int = 0) -> Tensor:
        return pyengine.ops.math.round(self, decimals)

    def floor(self) -> Tensor:
        return pyengine.ops.math.floor(self)

    def ceil(self) -> Tensor:
        return pyengine.ops.math.ceil(self)

    def trunc(self) -> Tensor:
        return pyengine.ops.math.trunc(self)

    def sin(self) -> Tensor:
        return pyengine.ops.math.sin(self)

    def cos(self) -> Tensor:
        return pyengine.ops.math.cos(self)

    def log1p(self) -> Tensor:
        return pyengine.ops.math.log1p(self)

    def expm1(self) -> Tensor:
        return pyengine.ops.math.expm1(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return pyengine.ops.math.clamp(self, min, max)

    clip = clamp

    def clamp_min(self, min: Any) -> Tensor:  # noqa: A002
        return pyengine.ops.math.clamp(self, min, None)

    def clamp_max(self, max: Any) -> Tensor:  # noqa: A002
        return pyengine.ops.math.clamp(self, None, max)

    def maximum(self, other: Any) -> Tensor:
        return pyengine.ops.math.maximum(self, other)

    def minimum(self, other: Any) -> Tensor:
        return pyengine.ops.math.minimum(self, other)

    def floor_divide(self, other: Any) -> Tensor:
        return pyengine.ops.math.floor_divide(self, other)

    def remainder(self, other: Any) -> Tensor:
        return pyengine.ops.math.remainder(self, other)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return pyengine.ops.stats.min(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return pyengine.ops.stats.argmin(self, dim, keepdim)

    def var(
        self,
        dim: Any = None,
        unbiased: Any = None,
        keepdim: bool = False,
        *,
        correction: Any = None,
    ) -> Tensor:
        return pyengine.ops.stats.var(self, dim, unbiased, keepdim, correction=correction)

    def std(
        self,
        dim: Any = None,
        unbiased: Any = None,
        keepdim: bool = False,
        *,
        correction: Any = None,
    ) -> Tensor:
        return pyengine.ops.stats.std(self, dim, unbiased, keepdim, correction=correction)

    def prod(self, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
        return pyengine.ops.stats.prod(self, dim, keepdim, dtype)

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
        return pyengine.ops.stats.norm(self, p, dim, keepdim)

    def any(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return pyengine.ops.stats.any(self, dim, keepdim)

    def all(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return pyengine.ops.stats.all(self, dim, keepdim)

    def where(self, condition: Tensor, other: Any) -> Tensor:
        return pyengine.ops.index.where(condition, self, other)

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        return pyengine.ops.index.masked_fill(self, mask, value)

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return self._inplace_op("masked_fill_", lambda s: s.masked_fill(mask, value))

    def repeat(self, *sizes: Any) -> Tensor:
        return pyengine.ops.index.repeat(self, _tmod()._shape_arg(sizes))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    reshape_as = view_as

    def split(self, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
        return pyengine.ops.index.split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        return pyengine.ops.index.chunk(self, chunks, dim)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        return pyengine.ops.index.unbind(self, dim)

    def flip(self, *dims: Any) -> Tensor:
        return pyengine.ops.index.flip(self, _tmod()._shape_arg(dims))

    def roll(self, shifts: Any, dims: Any = None) -> Tensor:
        return pyengine.ops.index.roll(self, shifts, dims)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        return pyengine.ops.index.sort(self, dim, descending, stable)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        return pyengine.ops.index.sort(self, dim, descending, stable).indices

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
        return pyengine.ops.index.topk(self, k, dim, largest, sorted)

    def cumsum(self, dim: int, dtype: Any = None) -> Tensor:
        return pyengine.ops.index.cumsum(self, dim, dtype)

    @property
    def mT(self) -> Tensor:  # noqa: N802 - PyTorch's name
        if self.ndim < 2:
            raise RuntimeError(
                f"tensor.mT is only supported on matrices or batches of matrices. "
                f"Got {self.ndim}-D tensor."
            )
        return self.transpose(-2, -1)

    def new_tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return _tensor()(
            data, dtype=dtype or self.dtype, device=self.device, requires_grad=requires_grad
        )

    def new_full(
        self, size: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False
    ) -> Tensor:
        t = _tensor()._wrap(
            pyengine.backend.backend(self.device).full(
                _tmod()._shape_arg((size,)),
                fill_value,
                _tmod()._as_dtype(dtype) if dtype is not None else self.dtype,
            ),
            self.device,
        )
        return t.requires_grad_(requires_grad) if requires_grad else t

    def new_zeros(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_full(_tmod()._shape_arg(size), 0, dtype, requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_full(_tmod()._shape_arg(size), 1, dtype, requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_full(_tmod()._shape_arg(size), 0, dtype, requires_grad)
