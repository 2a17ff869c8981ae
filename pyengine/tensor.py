"""The Tensor: an n-d array on a device, with an optional autograd history.

On the CPU the storage is a C-contiguous NumPy array (``.numpy()`` shares it). Tensors produced by
ops are always contiguous: view-like ops that would need strides (permute, slicing) copy.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine import autograd
from pyengine.backend import Device, backend

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")
float = float32  # noqa: A001 - torch.float alias
double = float64
long = int64

_SUPPORTED = (float32, float64, int64, int32, uint8, bool_)


def _as_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None
    if dt not in _SUPPORTED:
        raise TypeError(f"unsupported dtype {dt}; pyengine supports float32, float64, int64")
    return dt


class Tensor:
    __slots__ = ("data", "device", "requires_grad", "grad", "_ctx", "_retains_grad", "__weakref__")

    def __init__(
        self,
        data: Any,
        dtype: Any = None,
        device: str | Device = "cpu",
        requires_grad: bool = False,
    ) -> None:
        arr = _to_array(data, dtype)
        dev = Device(device)
        self.data = backend(dev).from_numpy(arr)
        self.device = dev
        self.grad: Tensor | None = None
        self._ctx: Any = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data: Any, device: Device, requires_grad: bool = False) -> Tensor:
        t = cls.__new__(cls)
        t.data = data
        t.device = device
        t.requires_grad = requires_grad
        t.grad = None
        t._ctx = None
        t._retains_grad = False
        return t

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> Any:
        return self._ctx

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def __repr__(self) -> str:
        body = np.array2string(self.detach().numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype != float32:
            extra += f", dtype={self.dtype}"
        if self.device.type != "cpu":
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError(
                f"only floating point tensors can require gradients, got dtype {self.dtype}"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        self._retains_grad = True

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        autograd.backward(self, gradient, retain_graph=retain_graph)

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def detach(self) -> Tensor:
        return Tensor._wrap(self.data, self.device)

    def detach_(self) -> Tensor:
        self._ctx = None
        self.requires_grad = False
        return self

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError(
                "Can't call numpy() on a Tensor that requires grad. Use tensor.detach().numpy()"
            )
        return backend(self.device).to_numpy(self.data)

    def tolist(self) -> Any:
        return self.detach().numpy().tolist()

    def item(self) -> Any:
        if self.numel() != 1:
            raise ValueError(
                f"a Tensor with {self.numel()} elements cannot be converted to a Python scalar"
            )
        return self.detach().numpy().reshape(()).item()

    def __float__(self) -> float:
        return builtins.float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.detach().numpy()
        return a if dtype is None else a.astype(dtype)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)`` as in PyTorch."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and _as_dtype(dtype) != self.dtype:
            out = ops.shape.cast(out, _as_dtype(dtype))
        if device is not None and Device(device) != self.device:
            out = ops.shape.to_device(out, Device(device))
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Tensor:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def long(self) -> Tensor:
        return self.to(int64)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def clone(self) -> Tensor:
        return ops.shape.clone(self)

    def contiguous(self) -> Tensor:
        return self

    def is_contiguous(self) -> bool:
        return True

    # ------------------------------------------------------------------ in-place (no autograd)
    def _check_inplace(self, name: str) -> None:
        if autograd.is_grad_enabled() and (self.requires_grad and self._ctx is None):
            raise RuntimeError(
                f"a leaf Variable that requires grad is being used in an in-place operation "
                f"({name}); wrap it in pyengine.no_grad()"
            )

    def zero_(self) -> Tensor:
        return self.fill_(0.0)

    def fill_(self, value: float) -> Tensor:
        self._check_inplace("fill_")
        backend(self.device).setitem(self.data, Ellipsis, value)
        return self

    def copy_(self, src: Any) -> Tensor:
        self._check_inplace("copy_")
        src = src if isinstance(src, Tensor) else Tensor(src, dtype=self.dtype)
        if (
            tuple(src.shape) != self.shape
            and np.broadcast_shapes(src.shape, self.shape) != self.shape
        ):
            raise RuntimeError(f"copy_: cannot copy shape {src.shape} into {self.shape}")
        be = backend(self.device)
        data = src.to(self.device).to(self.dtype).data
        be.setitem(self.data, Ellipsis, data)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("__setitem__")
        be = backend(self.device)
        if isinstance(value, Tensor):
            value = value.to(self.device).to(self.dtype).data
        be.setitem(self.data, _index_data(index), value)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Any) -> Tensor:
        return ops.elementwise.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.elementwise.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.elementwise.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.elementwise.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.elementwise.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.elementwise.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.elementwise.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.elementwise.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return ops.elementwise.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return ops.elementwise.pow(other, self)

    def __neg__(self) -> Tensor:
        return ops.elementwise.neg(self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return ops.gemm.matmul(self, other)

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.add(self.detach(), other), "+=")

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.sub(self.detach(), other), "-=")

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.mul(self.detach(), other), "*=")

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.div(self.detach(), other), "/=")

    def _inplace(self, result: Tensor, name: str) -> Tensor:
        self._check_inplace(name)
        if result.requires_grad:
            raise RuntimeError(
                f"in-place {name} with an operand that requires grad is not supported; "
                "write `x = x op y` instead"
            )
        if result.shape != self.shape:
            raise RuntimeError(f"in-place {name}: result shape {result.shape} != {self.shape}")
        backend(self.device).setitem(self.data, Ellipsis, result.data)
        return self

    def _compare(self, other: Any, op: Any) -> Tensor:
        o = other.numpy() if isinstance(other, Tensor) else other
        return Tensor(op(self.detach().numpy(), o), device=self.device)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ math methods
    def exp(self) -> Tensor:
        return ops.elementwise.exp(self)

    def log(self) -> Tensor:
        return ops.elementwise.log(self)

    def sqrt(self) -> Tensor:
        return ops.elementwise.sqrt(self)

    def abs(self) -> Tensor:
        return ops.elementwise.abs(self)

    def relu(self) -> Tensor:
        return ops.elementwise.relu(self)

    def sigmoid(self) -> Tensor:
        return ops.elementwise.sigmoid(self)

    def tanh(self) -> Tensor:
        return ops.elementwise.tanh(self)

    def pow(self, exponent: Any) -> Tensor:
        return ops.elementwise.pow(self, exponent)

    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.reduce.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.reduce.mean(self, dim, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return ops.reduce.max(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        if dim is None:
            return ops.reduce.max(self.reshape(-1), 0).indices
        return ops.reduce.max(self, dim, keepdim).indices

    def softmax(self, dim: int) -> Tensor:
        return ops.reduce.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        return ops.reduce.log_softmax(self, dim)

    def matmul(self, other: Tensor) -> Tensor:
        return ops.gemm.matmul(self, other)

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> Tensor:
        return ops.shape.reshape(self, _shape_arg(shape))

    def view(self, *shape: Any) -> Tensor:
        return ops.shape.reshape(self, _shape_arg(shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return ops.shape.flatten(self, start_dim, end_dim)

    def permute(self, *dims: Any) -> Tensor:
        return ops.shape.permute(self, _shape_arg(dims))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return ops.shape.transpose(self, dim0, dim1)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim}")
        return self.T

    def unsqueeze(self, dim: int) -> Tensor:
        return ops.shape.unsqueeze(self, dim)

    def squeeze(self, dim: int | None = None) -> Tensor:
        return ops.shape.squeeze(self, dim)

    def expand(self, *shape: Any) -> Tensor:
        return ops.shape.expand(self, _shape_arg(shape))

    def __getitem__(self, index: Any) -> Tensor:
        return ops.shape.getitem(self, index)


def _shape_arg(shape: Sequence[Any]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _index_data(index: Any) -> Any:
    if isinstance(index, Tensor):
        return index.numpy()
    if isinstance(index, tuple):
        return tuple(i.numpy() if isinstance(i, Tensor) else i for i in index)
    return index


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data.detach().numpy()
    else:
        arr = np.asarray(data)
    if dtype is not None:
        dt = _as_dtype(dtype)
    elif isinstance(data, np.ndarray) or isinstance(data, Tensor):
        dt = arr.dtype
        if dt == np.float16:
            dt = float32
    elif arr.dtype.kind == "f":
        dt = float32  # Python floats become float32, PyTorch's default dtype
    elif arr.dtype.kind in "iu":
        dt = int64
    elif arr.dtype.kind == "b":
        dt = bool_
    else:
        raise TypeError(f"cannot make a tensor from {type(data).__name__} of dtype {arr.dtype}")
    dt = _as_dtype(dt)
    return np.array(arr, dtype=dt, order="C", copy=True)


from pyengine import ops  # noqa: E402  (ops need Tensor defined first)
