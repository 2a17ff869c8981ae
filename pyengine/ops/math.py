"""Elementwise math beyond elementwise.py: sign/round/floor/ceil/trunc, sin/cos, log1p/expm1,
clamp, maximum/minimum, floor division and remainder.

The float32 CPU kernels are ``math_forward``/``math_backward``, ``clamp_forward``/
``clamp_backward`` and ``binary_math_forward`` (same broadcasting machinery as add/mul) in
csrc/elementwise.cpp, twinned in backend/numpy_ref/elementwise.py; maximum/minimum use the
existing ``binary_forward`` ops. These maps have no CUDA kernel: on a cuda tensor the device layer
raises NotImplementedError.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.ops._util import broadcast_shape, sum_to
from pyengine.ops.elementwise import _operands
from pyengine.tensor import Tensor

# Ops whose backward uses the output (expm1: dy/dx = y + 1) rather than the input.
_SAVES_OUTPUT = {"expm1"}
_ZERO_GRAD = {"sign", "round", "floor", "ceil", "trunc"}


class Math(Function):
    def forward(self, x, op: str, alpha: float = 0.0):
        self.op, self.alpha = op, float(alpha)
        y = self.be.empty(x.shape, x.dtype)
        self.k.math_forward(op, x, y, self.alpha)
        if self.needs_input_grad[0] and op not in _ZERO_GRAD:
            self.save_for_backward(y if op in _SAVES_OUTPUT else x)
        return y

    def backward(self, g):
        gx = self.be.empty(g.shape, g.dtype)
        if self.op in _ZERO_GRAD:
            self.be.setitem(gx, Ellipsis, 0.0)
            return (gx,)
        (s,) = self.saved
        self.k.math_backward(self.op, s, g, gx, self.alpha)
        return (gx,)

    def backward_graph(self, g):
        (x,) = self.inputs
        op = self.op
        if op in _ZERO_GRAD:
            return (g * 0,)
        if op == "sin":
            return (g * cos(x),)
        if op == "cos":
            return (-g * sin(x),)
        if op == "log1p":
            return (g / (x + 1),)
        return (g * x.exp(),)  # expm1


def _math(op: str):
    def fn(x: Tensor) -> Tensor:
        if x.dtype.kind != "f":
            if op in _ZERO_GRAD:
                return Tensor(_NP[op](x.numpy()).astype(x.dtype), device=x.device)
            x = x.float()
        return Math.apply(x, op=op)

    fn.__name__ = op
    return fn


_NP = {"sign": np.sign, "round": np.round, "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc}

sign = _math("sign")
floor = _math("floor")
ceil = _math("ceil")
trunc = _math("trunc")
sin = _math("sin")
cos = _math("cos")
log1p = _math("log1p")
expm1 = _math("expm1")
_round = _math("round")


def round(x: Tensor, decimals: int = 0) -> Tensor:  # noqa: A001
    """Round half to even, as torch.round; ``decimals`` scales by 10**decimals first."""
    if decimals == 0:
        return _round(x)
    s = 10.0**decimals
    return _round(x * s) / s


class Clamp(Function):
    """One pass of csrc/elementwise.cpp clamp_forward; a missing bound is passed as -inf/+inf."""

    def forward(self, x, lo: float, hi: float):
        self.lo, self.hi = lo, hi
        y = self.be.empty(x.shape, x.dtype)
        self.k.clamp_forward(x, y, lo, hi)
        if self.needs_input_grad[0]:
            self.save_for_backward(x)
        return y

    def backward(self, g):
        (x,) = self.saved
        gx = self.be.empty(g.shape, g.dtype)
        self.k.clamp_backward(x, g, gx, self.lo, self.hi)
        return (gx,)

    def backward_graph(self, g):
        xd = self.inputs[0].detach()
        keep = (xd >= self.lo).to(g.dtype) * (xd <= self.hi).to(g.dtype)
        return (g * keep,)


def clamp(x: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Clamp into [min, max]; the gradient passes where x is inside, bounds included."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if x.dtype.kind != "f":
        return Tensor(np.clip(x.numpy(), min, max).astype(x.dtype), device=x.device)
    lo = -np.inf if min is None else float(min)
    hi = np.inf if max is None else float(max)
    return Clamp.apply(x, lo=lo, hi=hi)


clip = clamp


class MinMax(Function):
    """maximum/minimum: the gradient goes to the chosen operand, split evenly on ties (as
    torch.maximum's backward does)."""

    def forward(self, a, b, op: str):
        self.op, self.shapes = op, (a.shape, b.shape)
        out = self.be.empty(broadcast_shape(a.shape, b.shape, op), a.dtype)
        self.k.binary_forward(op, a, b, out)
        self.save_for_backward(a, b)
        return out

    def _masks(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        an, bn = self.be.to_numpy(a), self.be.to_numpy(b)
        wins = (an > bn) if self.op == "maximum" else (an < bn)
        tie = an == bn
        dt = an.dtype
        half = (0.5 * tie).astype(dt)
        return wins.astype(dt) + half, (~wins & ~tie).astype(dt) + half

    def backward(self, g):
        a, b = self.saved
        ma, mb = self._masks(a, b)
        gn = self.be.to_numpy(g)
        sa, sb = self.shapes
        ga = sum_to(self, self.be.from_numpy(gn * ma), sa) if self.needs_input_grad[0] else None
        gb = sum_to(self, self.be.from_numpy(gn * mb), sb) if self.needs_input_grad[1] else None
        return ga, gb

    def backward_graph(self, g):
        from pyengine.ops.index import sum_to_tensor

        a, b = self.inputs
        ma, mb = self._masks(a._data, b._data)
        sa, sb = self.shapes
        ga = sum_to_tensor(g * Tensor(ma), sa) if self.needs_input_grad[0] else None
        gb = sum_to_tensor(g * Tensor(mb), sb) if self.needs_input_grad[1] else None
        return ga, gb


def maximum(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        return Tensor(np.maximum(a.numpy(), b.numpy()), device=a.device)
    return MinMax.apply(a, b, op="maximum")


def minimum(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        return Tensor(np.minimum(a.numpy(), b.numpy()), device=a.device)
    return MinMax.apply(a, b, op="minimum")


class Remainder(Function):
    """a % b with the divisor's sign; d/da = 1, d/db = -floor(a / b), as torch.remainder."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        out = self.be.empty(broadcast_shape(a.shape, b.shape, "remainder"), a.dtype)
        self.k.binary_math_forward("remainder", a, b, out)
        if self.needs_input_grad[1]:
            q = self.be.empty(out.shape, a.dtype)
            self.k.binary_math_forward("floor_divide", a, b, q)
            self.save_for_backward(q)
        return out

    def backward(self, g):
        sa, sb = self.shapes
        ga = sum_to(self, g, sa) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            (q,) = self.saved
            t = self.be.empty(g.shape, g.dtype)
            self.k.binary_forward("mul", g, q, t)
            self.k.unary_forward("neg", t, t)
            gb = sum_to(self, t, sb)
        return ga, gb

    def backward_graph(self, g):
        from pyengine.ops.index import sum_to_tensor

        a, b = self.inputs
        sa, sb = self.shapes
        ga = sum_to_tensor(g, sa) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            gb = sum_to_tensor(-g * floor_divide(a.detach(), b.detach()), sb)
        return ga, gb


def remainder(a: Any, b: Any) -> Tensor:
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        bn = b.numpy()
        if np.any(bn == 0):
            raise RuntimeError("ZeroDivisionError: integer modulo by zero")
        return Tensor(np.remainder(a.numpy(), bn), device=a.device)
    return Remainder.apply(a, b)


def floor_divide(a: Any, b: Any) -> Tensor:
    """a // b rounded toward -inf; not differentiable (its gradient is zero almost everywhere),
    so the result never requires grad."""
    a, b = _operands(a, b)
    if a.dtype.kind != "f":
        bn = b.numpy()
        if np.any(bn == 0):
            raise RuntimeError("ZeroDivisionError: integer division by zero")
        return Tensor(np.floor_divide(a.numpy(), bn), device=a.device)
    from pyengine.backend import backend

    be = backend(a.device)
    out = be.empty(broadcast_shape(a.shape, b.shape, "floor_divide"), a.dtype)
    be.kernels(a.dtype).binary_math_forward("floor_divide", a._data, b._data, out)
    return Tensor._wrap(out, a.device)
