"""Gradient clipping and flat parameter vectors, as torch.nn.utils (clip_grad_norm_,
clip_grad_value_, parameters_to_vector, vector_to_parameters). The norms are pyengine reductions
over the gradients; the rescale is one in-place pass per gradient."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pyengine.autograd import Function, no_grad
from pyengine.ops.shape import cat
from pyengine.tensor import Tensor


def _tensors(parameters: Any) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _norm(t: Tensor, norm_type: float) -> Tensor:
    if norm_type == math.inf:
        return t.abs().max()
    if norm_type == 2.0:
        return (t * t).sum().sqrt()
    return (t.abs() ** norm_type).sum() ** (1.0 / norm_type)


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)) in place; returns the total
    norm of the gradients (as one vector) before clipping."""
    grads = [p.grad for p in _tensors(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor(0.0)
    with no_grad():
        norms = [_norm(g, norm_type).reshape(1) for g in grads]
        total = _norm(cat(norms), norm_type)
        value = float(total.item())
        if error_if_nonfinite and not math.isfinite(value):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is "
                "non-finite, so it cannot be clipped. To disable this error and scale the "
                "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
            )
        coef = float(max_norm) / (value + 1e-6)
        if coef < 1.0:
            for g in grads:
                g *= coef
    return total


class _ClampValue(Function):
    """min(max(g, -c), c) with the elementwise maximum/minimum kernels (no gradient needed)."""

    def forward(self, g, c: float):
        t = self.be.empty(g.shape, g.dtype)
        self.k.binary_forward("maximum", g, self.be.full((), -c, g.dtype), t)
        out = self.be.empty(g.shape, g.dtype)
        self.k.binary_forward("minimum", t, self.be.full((), c, g.dtype), out)
        return out


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    c = float(clip_value)
    with no_grad():
        for p in _tensors(parameters):
            if p.grad is not None:
                p.grad.copy_(_ClampValue.apply(p.grad, c=c))


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters, in order."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise RuntimeError(
            f"vector_to_parameters: expected a 1-D vector of {total} elements, got shape "
            f"{vec.shape}"
        )
    i = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[i : i + n].reshape(p.shape))
            i += n
