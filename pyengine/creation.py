"""Tensor factories: tensor, from_numpy, zeros, ones, full, empty, randn, rand, arange."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine import random
from pyengine.backend import Device, backend
from pyengine.tensor import Tensor, _as_dtype, _shape_arg, float32


def tensor(
    data: Any, dtype: Any = None, device: str | Device = "cpu", requires_grad: bool = False
) -> Tensor:
    """Copy ``data`` (nested lists, scalars, arrays, tensors) into a new tensor."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(a: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with ``a`` (C-contiguous, writeable, supported dtype)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(a).__name__}")
    dt = _as_dtype(a.dtype)
    if not a.flags.c_contiguous:
        raise ValueError(
            f"from_numpy needs a C-contiguous array to share memory (got strides {a.strides} for "
            f"shape {a.shape}); pass np.ascontiguousarray(a) or use pyengine.tensor(a) to copy"
        )
    if not a.flags.writeable:
        raise ValueError(
            "from_numpy got a read-only array: kernels and optimisers write in place; "
            "pass a.copy() "
            "or use pyengine.tensor(a) to copy"
        )
    return Tensor._wrap(a.view(dt), Device("cpu"))


def _make(array: np.ndarray, device: Any, requires_grad: bool) -> Tensor:
    dev = Device(device)
    t = Tensor._wrap(backend(dev).from_numpy(array), dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _dt(dtype: Any) -> np.dtype:
    return float32 if dtype is None else _as_dtype(dtype)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def zeros(
    *shape: Any, dtype: Any = None, device: Any = "cpu", requires_grad: bool = False
) -> Tensor:
    return _make(np.zeros(_check_shape(_shape_arg(shape)), _dt(dtype)), device, requires_grad)


def ones(
    *shape: Any, dtype: Any = None, device: Any = "cpu", requires_grad: bool = False
) -> Tensor:
    return _make(np.ones(_check_shape(_shape_arg(shape)), _dt(dtype)), device, requires_grad)


def full(
    shape: Any,
    fill_value: float,
    dtype: Any = None,
    device: Any = "cpu",
    requires_grad: bool = False,
) -> Tensor:
    shp = _check_shape(_shape_arg((shape,)))
    return _make(np.full(shp, fill_value, _dt(dtype)), device, requires_grad)


def empty(
    *shape: Any, dtype: Any = None, device: Any = "cpu", requires_grad: bool = False
) -> Tensor:
    return _make(np.empty(_check_shape(_shape_arg(shape)), _dt(dtype)), device, requires_grad)


def randn(
    *shape: Any, dtype: Any = None, device: Any = "cpu", requires_grad: bool = False
) -> Tensor:
    a = random.generator().standard_normal(_check_shape(_shape_arg(shape))).astype(_dt(dtype))
    return _make(a, device, requires_grad)


def rand(
    *shape: Any, dtype: Any = None, device: Any = "cpu", requires_grad: bool = False
) -> Tensor:
    if _dt(dtype).kind != "f":
        raise TypeError(f"rand: expected a floating-point dtype, got {_dt(dtype)}")
    a = random.generator().random(_check_shape(_shape_arg(shape))).astype(_dt(dtype))
    return _make(a, device, requires_grad)


def randint(low: int, high: int, size: Any, device: Any = "cpu") -> Tensor:
    return _make(
        random.generator().integers(low, high, _shape_arg((size,))).astype(np.int64), device, False
    )


def arange(
    start: float, end: float | None = None, step: float = 1, dtype: Any = None, device: Any = "cpu"
) -> Tensor:
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    a = np.arange(start, end, step) if end is not None else np.arange(start)
    dt = _as_dtype(dtype) if dtype is not None else (np.int64 if a.dtype.kind in "iu" else float32)
    return _make(a.astype(dt), device, False)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def randn_like(t: Tensor) -> Tensor:
    return randn(t.shape, dtype=t.dtype, device=t.device)


def linspace(
    start: float,
    end: float,
    steps: int,
    dtype: Any = None,
    device: Any = "cpu",
    requires_grad: bool = False,
) -> Tensor:
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    return _make(np.linspace(start, end, int(steps)).astype(_dt(dtype)), device, requires_grad)


def eye(
    n: int,
    m: int | None = None,
    dtype: Any = None,
    device: Any = "cpu",
    requires_grad: bool = False,
) -> Tensor:
    if n < 0 or (m is not None and m < 0):
        raise RuntimeError(f"eye: n and m must be non-negative, got n={n}, m={m}")
    return _make(np.eye(n, m, dtype=_dt(dtype)), device, requires_grad)


def full_like(
    t: Tensor, fill_value: float, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    return full(
        t.shape, fill_value, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad
    )


def empty_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def rand_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def randint_like(t: Tensor, low: int, high: int | None = None, dtype: Any = None) -> Tensor:
    if high is None:
        low, high = 0, low
    out = randint(low, high, t.shape, device=t.device)
    return out.to(dtype or t.dtype)
