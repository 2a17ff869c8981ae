"""Elementwise ops with broadcasting (csrc/elementwise.cpp)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.ops._util import broadcast_shape, sum_to
from pyengine.tensor import Tensor


def _binary(ctx: Any, op: str, a: Any, b: Any) -> Any:
    out = ctx.be.empty(broadcast_shape(tuple(a.shape), tuple(b.shape), op), a.dtype)
    ctx.k.binary_forward(op, a, b, out)
    return out


def _sum_to_t(ctx: Any, g: Tensor, i: int) -> Tensor | None:
    """Tensor-level sum_to for ``backward_graph`` (create_graph=True)."""
    from pyengine.ops.index import sum_to_tensor

    return sum_to_tensor(g, ctx.shapes[i]) if ctx.needs_input_grad[i] else None


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return _binary(self, "add", a, b)

    def backward(self, g):
        sa, sb = self.shapes
        return (
            sum_to(self, g, sa) if self.needs_input_grad[0] else None,
            sum_to(self, g, sb) if self.needs_input_grad[1] else None,
        )

    def backward_graph(self, g):
        return _sum_to_t(self, g, 0), _sum_to_t(self, g, 1)


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return _binary(self, "sub", a, b)

    def backward(self, g):
        sa, sb = self.shapes
        gb = None
        if self.needs_input_grad[1]:
            n = self.be.empty(g.shape, g.dtype)
            self.k.unary_forward("neg", g, n)
            gb = sum_to(self, n, sb)
        return (sum_to(self, g, sa) if self.needs_input_grad[0] else None, gb)

    def backward_graph(self, g):
        return _sum_to_t(self, g, 0), _sum_to_t(self, -g, 1)


class Mul(Function):
    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.save_for_backward(a if need_b else None, b if need_a else None)
        self.shapes = (a.shape, b.shape)
        return _binary(self, "mul", a, b)

    def backward(self, g):
        a, b = self.saved
        sa, sb = self.shapes
        ga = sum_to(self, _binary(self, "mul", g, b), sa) if self.needs_input_grad[0] else None
        gb = sum_to(self, _binary(self, "mul", g, a), sb) if self.needs_input_grad[1] else None
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        return _sum_to_t(self, g * b, 0), _sum_to_t(self, g * a, 1)


class Div(Function):
    def forward(self, a, b):
        y = _binary(self, "div", a, b)
        self.save_for_backward(b, y if self.needs_input_grad[1] else None)
        self.shapes = (a.shape, b.shape)
        return y

    def backward(self, g):
        b, y = self.saved
        sa, sb = self.shapes
        ga = gb = None
        gdb = _binary(self, "div", g, b)
        if self.needs_input_grad[0]:
            ga = sum_to(self, gdb, sa)
        if self.needs_input_grad[1]:
            t = _binary(self, "mul", gdb, y)  # d(a/b)/db = -a/b^2 = -y/b
            self.k.unary_forward("neg", t, t)
            gb = sum_to(self, t, sb)
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        return _sum_to_t(self, g / b, 0), _sum_to_t(self, -g * a / (b * b), 1)


class PowScalar(Function):
    def forward(self, x, exponent: float):
        self.exponent = float(exponent)
        if self.needs_input_grad[0]:
            self.save_for_backward(x)
        y = self.be.empty(x.shape, x.dtype)
        self.k.unary_forward("pow", x, y, self.exponent)
        return y

    def backward(self, g):
        (x,) = self.saved
        gx = self.be.empty(g.shape, g.dtype)
        self.k.unary_backward("pow", x, g, gx, self.exponent)
        return (gx,)

    def backward_graph(self, g):
        (x,) = self.inputs
        e = self.exponent
        return (g * e * x ** (e - 1) if e != 1 else g,)


class Pow(Function):
    """a ** b for tensor exponents: d/da = b a^(b-1), d/db = a^b log(a)."""

    def forward(self, a, b):
        y = _binary(self, "pow", a, b)
        self.save_for_backward(a, b, y)
        self.shapes = (a.shape, b.shape)
        return y

    def backward(self, g):
        a, b, y = self.saved
        sa, sb = self.shapes
        ga = gb = None
        if self.needs_input_grad[0]:
            t = _binary(self, "div", y, a)
            t = _binary(self, "mul", t, b)
            ga = sum_to(self, _binary(self, "mul", g, t), sa)
        if self.needs_input_grad[1]:
            la = self.be.empty(a.shape, a.dtype)
            self.k.unary_forward("log", a, la)
            t = _binary(self, "mul", y, la)
            gb = sum_to(self, _binary(self, "mul", g, t), sb)
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        ga = _sum_to_t(self, g * b * a ** (b - 1), 0) if self.needs_input_grad[0] else None
        gb = _sum_to_t(self, g * a**b * a.log(), 1) if self.needs_input_grad[1] else None
        return ga, gb


# Ops whose backward needs the output y rather than the input x.
_SAVES_OUTPUT = {"relu", "sigmoid", "tanh", "exp", "sqrt"}
_MASK_FWD = "relu_mask_forward"


class Unary(Function):
    """y = op(x). A ReLU whose input needs a gradient keeps one bit per element for backward
    (relu_mask_forward) where the device has that kernel, instead of the output: its backward
    then reads n/8 bytes instead of 4n."""

    def forward(self, x, op: str, alpha: float = 0.0):
        self.op, self.alpha = op, float(alpha)
        y = self.be.empty(x.shape, x.dtype)
        self.masked = op == "relu" and self.needs_input_grad[0] and hasattr(self.k, _MASK_FWD)
        if self.masked:
            mask = self.be.empty(((x.size + 7) // 8,), np.uint8)
            self.k.relu_mask_forward(x, y, mask)
            self.save_for_backward(mask)
            return y
        self.k.unary_forward(op, x, y, self.alpha)
        if self.needs_input_grad[0]:
            self.save_for_backward(y if op in _SAVES_OUTPUT else x)
        return y

    def backward(self, g):
        (s,) = self.saved
        gx = self.be.empty(g.shape, g.dtype)
        if self.masked:
            self.k.relu_mask_backward(s, g, gx)
        else:
            self.k.unary_backward(self.op, s, g, gx, self.alpha)
        return (gx,)

    def backward_graph(self, g):
        (x,) = self.inputs
        op, a = self.op, self.alpha
        if op in ("relu", "leaky_relu", "abs"):
            # Piecewise-linear: the local slope is a constant of x, not differentiated further.
            xd = x.detach()
            if op == "relu":
                slope = (xd > 0).to(g.dtype)
            elif op == "leaky_relu":
                pos = (xd > 0).to(g.dtype)
                slope = pos + (1 - pos) * a
            else:
                slope = (xd > 0).to(g.dtype) - (xd < 0).to(g.dtype)
            return (g * slope,)
        if op == "sigmoid":
            s = x.sigmoid()
            return (g * s * (1 - s),)
        if op == "tanh":
            t = x.tanh()
            return (g * (1 - t * t),)
        if op == "exp":
            return (g * x.exp(),)
        if op == "log":
            return (g / x,)
        if op == "sqrt":
            return (g * 0.5 / x.sqrt(),)
        if op == "neg":
            return (-g,)
        raise RuntimeError(f"{op} does not support double backward")


def _operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Promote a Python/NumPy scalar operand to a 0-d tensor of the other operand's kind."""
    if not isinstance(a, Tensor):
        a = _scalar_like(a, b)
    if not isinstance(b, Tensor):
        b = _scalar_like(b, a)
    if a.dtype != b.dtype:
        if a.dtype.kind == "f" and b.dtype.kind != "f":
            b = b.to(a.dtype)
        elif b.dtype.kind == "f" and a.dtype.kind != "f":
            a = a.to(b.dtype)
        elif a.dtype.kind == "f" and b.dtype.kind == "f":
            # PyTorch's promotion: the wider float wins, except that a 0-d tensor (a wrapped
            # Python scalar) takes the other operand's dtype.
            if a.ndim == 0 and b.ndim > 0:
                a = a.to(b.dtype)
            elif b.ndim == 0 and a.ndim > 0:
                b = b.to(a.dtype)
            else:
                wide = np.promote_types(a.dtype, b.dtype)
                a, b = a.to(wide), b.to(wide)
    return a, b


def _scalar_like(v: Any, other: Tensor) -> Tensor:
    from pyengine.backend import backend

    if isinstance(v, Tensor):
        return v
    if not isinstance(v, (int, float, np.number, np.ndarray, list, tuple)):
        raise TypeError(f"unsupported operand type for a Tensor operation: {type(v).__name__}")
    dtype = other.dtype if other.dtype.kind == "f" else None
    t = Tensor(v, dtype=dtype)
    if other.device.type != "cpu":
        return Tensor._wrap(backend(other.device).from_numpy(t._data), other.device)
    return t


def _int_op(a: Tensor, b: Tensor, fn: Any) -> Tensor:
    return Tensor(fn(a.numpy(), b.numpy()), device=a.device)


def add(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        return _int_op(a, b, lambda x, y: x + y)
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        return _int_op(a, b, lambda x, y: x - y)
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        return _int_op(a, b, lambda x, y: x * y)
    return Mul.apply(a, b)


def div(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        a = a.float()
        b = b.float()
    return Div.apply(a, b)


def pow(a: Any, b: Any) -> Tensor:
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        return PowScalar.apply(a, exponent=float(b))
    a, b = _operands(a, b)
    return Pow.apply(a, b)


def _unary(op: str, alpha: float = 0.0):
    def fn(x: Tensor) -> Tensor:
        return Unary.apply(x, op=op, alpha=alpha)

    fn.__name__ = op
    return fn


neg = _unary("neg")
exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
abs = _unary("abs")  # noqa: A001
relu = _unary("relu")
sigmoid = _unary("sigmoid")
tanh = _unary("tanh")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return Unary.apply(x, op="leaky_relu", alpha=negative_slope)
