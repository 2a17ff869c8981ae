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
from pyengine.tensor_methods import TensorMethods

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")
float = float32  # noqa: A001 - torch.float alias
double = float64
half = float16
long = int64

# float16 is a storage type: ops compute on the NumPy twin (which may upcast internally).
_SUPPORTED = (float16, float32, float64, int64, int32, uint8, bool_)


def _as_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None
    if dt not in _SUPPORTED:
        raise TypeError(
            f"unsupported dtype {dt}; pyengine supports float16, float32, float64, int64, int32, "
            "uint8, bool"
        )
    return dt


class Tensor(TensorMethods):
    # _data is the device array (a NumPy array on the CPU); ``.data`` is PyTorch's detached view.
    __slots__ = (
        "_data",
        "device",
        "_requires_grad",
        "grad",
        "_ctx",
        "_retains_grad",
        "_hooks",
        "__weakref__",
    )
    # ndarray <op> Tensor defers to the Tensor's reflected operator, so it returns a Tensor.
    __array_priority__ = 1000

    def __init__(
        self,
        *args: Any,
        dtype: Any = None,
        device: str | Device = "cpu",
        requires_grad: bool = False,
    ) -> None:
        """``Tensor(data)`` copies data; ``Tensor(2, 3)`` (sizes) makes a zero-filled float32
        tensor of that shape, as ``torch.Tensor(2, 3)`` does (PyTorch leaves it uninitialised)."""
        if len(args) == 2 and not _is_int(args[1]) and dtype is None:
            args, dtype = args[:1], args[1]  # Tensor(data, dtype), kept for older callers
        if not args:
            data: Any = np.empty((0,), float32)
        elif len(args) > 1:
            if not all(_is_int(a) for a in args):
                raise TypeError(f"Tensor(*sizes) expects integer sizes, got {args}")
            if any(a < 0 for a in args):
                raise ValueError(f"negative dimension in shape {tuple(args)}")
            data = np.zeros(tuple(builtins.int(a) for a in args), float32)
        else:
            data = args[0]
        arr = _to_array(data, dtype)
        dev = Device(device)
        self._data = backend(dev).from_numpy(arr)
        self.device = dev
        self.grad: Tensor | None = None
        self._ctx: Any = None
        self._retains_grad = False
        self._hooks: list[Any] | None = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data: Any, device: Device, requires_grad: bool = False) -> Tensor:
        t = cls.__new__(cls)
        t._data = data
        t.device = device
        t._requires_grad = requires_grad
        t.grad = None
        t._ctx = None
        t._retains_grad = False
        t._hooks = None
        return t

    # ------------------------------------------------------------------ storage
    @property
    def data(self) -> Tensor:
        """A detached tensor sharing this tensor's storage (and its version counter)."""
        return Tensor._wrap(self._data, self.device)

    @data.setter
    def data(self, value: Tensor) -> None:
        # As in PyTorch: the tensor now uses value's storage; autograd does not see the change.
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be assigned a Tensor, got {type(value).__name__}")
        self._data, self.device = value._data, value.device

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(bool(value))

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's storage has seen (PyTorch's ``_version``)."""
        return autograd.version_of(self._data)

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

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
            extra += f", grad_fn=<{autograd.node_name(self._ctx)}>"
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
        self._requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        self._retains_grad = True

    def register_hook(self, hook: Any) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a non-None return value
        replaces the gradient. Returns a handle whose ``remove()`` unregisters the hook."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return autograd.RemovableHandle(self._hooks, hook)

    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        autograd.backward(
            self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs
        )

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def detach(self) -> Tensor:
        return Tensor._wrap(self._data, self.device)

    def detach_(self) -> Tensor:
        self._ctx = None
        self._requires_grad = False
        return self

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError(
                "Can't call numpy() on a Tensor that requires grad. Use tensor.detach().numpy()"
            )
        return backend(self.device).to_numpy(self._data)

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

    def int(self) -> Tensor:
        return self.to(int32)

    def half(self) -> Tensor:
        return self.to(float16)

    def bool(self) -> Tensor:
        return self.to(bool_)

    def type(self, dtype: Any = None) -> Any:
        """``type()`` names the tensor type as PyTorch does; ``type(dtype)`` casts."""
        if dtype is None:
            return _TYPE_NAMES.get(self.dtype, f"pyengine.{self.dtype}Tensor")
        if isinstance(dtype, str) and dtype in _TYPE_FROM_NAME:
            dtype = _TYPE_FROM_NAME[dtype]
        return self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def clone(self) -> Tensor:
        return ops.shape.clone(self)

    def contiguous(self) -> Tensor:
        return self

    def is_contiguous(self) -> bool:
        return True

    # ------------------------------------------------------------------ in-place
    def _check_inplace(self, name: str) -> None:
        if autograd.is_grad_enabled() and (self._requires_grad and self._ctx is None):
            raise RuntimeError(
                f"a leaf Variable that requires grad is being used in an in-place operation "
                f"({name}); wrap it in pyengine.no_grad()"
            )

    def _inplace_op(self, name: str, fn: Any, *others: Any) -> Tensor:
        """Run ``fn(self, *others)`` out of place, write the result into this tensor's storage and
        bump its version. When autograd records, the tensor's history is rebased onto the op (as
        PyTorch does): the node's input is an alias carrying the old history, so gradients flow
        through the in-place op, and any node that saved the old values sees the new version and
        refuses to run backward."""
        self._check_inplace(name)
        record = self._records(*others)
        if record:
            # The op reads a clone: what it saves must not be the storage it is about to
            # overwrite (only nodes recorded before this op may see the new version).
            src = Tensor._wrap(self._data, self.device, self._requires_grad)
            src._ctx = self._ctx
            out = fn(src.clone() if src._requires_grad else src, *others)
        else:
            with autograd.no_grad():
                out = fn(self.detach(), *others)
        if out.shape != self.shape:
            raise RuntimeError(
                f"in-place {name}: output with shape {self.shape} doesn't match the broadcast "
                f"shape {out.shape}"
            )
        if out.dtype != self.dtype and self.dtype.kind != "f" and out.dtype.kind == "f":
            raise RuntimeError(
                f"in-place {name}: result type {out.dtype} can't be cast to the desired output "
                f"type {self.dtype}"
            )
        data = (
            out._data
            if out.dtype == self.dtype
            else backend(self.device).astype(out._data, self.dtype)
        )
        if data is not self._data:
            backend(self.device).setitem(self._data, Ellipsis, data)
        autograd.bump_version(self._data, name)
        if record:
            self._ctx, self._requires_grad = out._ctx, out._requires_grad
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0.0)

    def fill_(self, value: Any) -> Tensor:
        self._check_inplace("fill_")
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise RuntimeError(
                    f"fill_ only supports 0-dimension value tensor but got tensor with "
                    f"{value.ndim} dimensions"
                )
            if value._requires_grad:
                return self._inplace_op(
                    "fill_", lambda s, v: ops.index.index_put(s, Ellipsis, v.reshape(())), value
                )
            value = value.item()
        if self._records():
            return self._inplace_op("fill_", lambda s: ops.index.index_put(s, Ellipsis, value))
        self._write(Ellipsis, value, "fill_")
        return self

    def copy_(self, src: Any) -> Tensor:
        self._check_inplace("copy_")
        src = src if isinstance(src, Tensor) else Tensor(src, dtype=self.dtype)
        try:
            ok = np.broadcast_shapes(src.shape, self.shape) == self.shape
        except ValueError:
            ok = False
        if not ok:
            raise RuntimeError(f"copy_: cannot copy shape {src.shape} into {self.shape}")
        if self._records(src):
            return self._inplace_op(
                "copy_", lambda s, o: ops.index.index_put(s, Ellipsis, o.to(s.device)), src
            )
        self._write(Ellipsis, src.to(self.device).to(self.dtype)._data, "copy_")
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("__setitem__")
        if self._records(value):
            self._inplace_op(
                "__setitem__",
                lambda s, v: ops.index.index_put(s, _index_data(index), v),
                value,
            )
            return
        if isinstance(value, Tensor):
            value = value.to(self.device).to(self.dtype)._data
        elif value is None:
            raise TypeError("cannot assign None to a tensor element")
        self._write(_index_data(index), value, "__setitem__")

    def _records(self, *others: Any) -> bool:
        """Whether an in-place op on self with these operands must be recorded by autograd."""
        return autograd.is_grad_enabled() and (
            self._requires_grad or any(isinstance(o, Tensor) and o._requires_grad for o in others)
        )

    def _write(self, index: Any, values: Any, name: str) -> None:
        """Unrecorded in-place write (one pass over the selection) plus the version bump."""
        backend(self.device).setitem(self._data, index, values)
        autograd.bump_version(self._data, name)

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace_op("add_", lambda s, o: s + (o if alpha == 1 else o * alpha), other)

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace_op("sub_", lambda s, o: s - (o if alpha == 1 else o * alpha), other)

    def mul_(self, other: Any) -> Tensor:
        return self._inplace_op("mul_", ops.elementwise.mul, other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace_op("div_", ops.elementwise.div, other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self._inplace_op("clamp_", lambda s: s.clamp(min, max))

    def relu_(self) -> Tensor:
        return self._inplace_op("relu_", ops.elementwise.relu)

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace_op("+=", ops.elementwise.add, other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace_op("-=", ops.elementwise.sub, other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace_op("*=", ops.elementwise.mul, other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace_op("/=", ops.elementwise.div, other)

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

    def _compare(self, other: Any, op: Any) -> Tensor:
        # Comparisons are not differentiable: they read the values whatever requires grad.
        o = other.detach().numpy() if isinstance(other, Tensor) else other
        if o is None:
            raise TypeError(f"cannot compare a Tensor with None using {op.__name__}")
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


_TYPE_NAMES = {
    float16: "pyengine.HalfTensor",
    float32: "pyengine.FloatTensor",
    float64: "pyengine.DoubleTensor",
    int64: "pyengine.LongTensor",
    int32: "pyengine.IntTensor",
    uint8: "pyengine.ByteTensor",
    bool_: "pyengine.BoolTensor",
}
_TYPE_FROM_NAME = {
    **{v: k for k, v in _TYPE_NAMES.items()},
    **{v.replace("pyengine.", "torch."): k for k, v in _TYPE_NAMES.items()},
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (builtins.int, np.integer)) and not isinstance(
        v, (builtins.bool, np.bool_)
    )


def _shape_arg(shape: Sequence[Any]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _index_data(index: Any) -> Any:
    ops._util.check_int_indices(index)
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
