"""NumPy twins of csrc/activation.cpp: parameterised activations, the elementwise maps the losses
compose from, and PReLU."""

import math

import numpy as np

__all__ = ["activation_forward", "activation_backward", "prelu_forward", "prelu_backward"]

# NumPy has no erf; math.erf per element is exact in float64 (the twin is the oracle, not fast).
_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    return _erf(x).astype(x.dtype)


_SQRT2_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def _check(op, alpha):
    if op == "softplus" and alpha == 0:
        raise ValueError("softplus: beta must be non-zero")
    if op == "smooth_l1" and alpha < 0:
        raise ValueError(f"smooth_l1: beta must be >= 0, got {alpha}")
    if op == "huber" and alpha <= 0:
        raise ValueError(f"huber: delta must be > 0, got {alpha}")


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _softplus(x, beta, threshold):
    bx = beta * x
    return np.where(bx > threshold, x, (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta)


def activation_forward(op, x, y, alpha=0.0, beta=0.0):
    _check(op, alpha)
    with np.errstate(all="ignore"):
        if op == "gelu":
            y[...] = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        elif op == "gelu_tanh":
            y[...] = 0.5 * x * (1 + np.tanh(_SQRT2_PI * (x + _GELU_C * x**3)))
        elif op == "elu":
            y[...] = np.where(x > 0, x, alpha * np.expm1(x))
        elif op == "silu":
            y[...] = x * _sigmoid(x)
        elif op == "softplus":
            y[...] = _softplus(x, alpha, beta)
        elif op == "mish":
            y[...] = x * np.tanh(_softplus(x, 1.0, np.inf))
        elif op == "hardtanh":
            y[...] = np.where(x < alpha, alpha, np.where(x > beta, beta, x))
        elif op == "smooth_l1":
            a = np.abs(x)
            y[...] = np.where(a < alpha, 0.5 * x * x / (alpha or 1), a - 0.5 * alpha)
        elif op == "huber":
            a = np.abs(x)
            y[...] = np.where(a < alpha, 0.5 * x * x, alpha * (a - 0.5 * alpha))
        elif op == "log_clamped":
            y[...] = np.maximum(np.log(x), -100.0)
        else:
            raise ValueError(f"unknown activation '{op}'")


def activation_backward(op, x, grad_output, grad_input, alpha=0.0, beta=0.0):
    _check(op, alpha)
    g = grad_output
    with np.errstate(all="ignore"):
        if op == "gelu":
            d = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(
                2 * math.pi
            )
        elif op == "gelu_tanh":
            t = np.tanh(_SQRT2_PI * (x + _GELU_C * x**3))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT2_PI * (1 + 3 * _GELU_C * x * x)
        elif op == "elu":
            d = np.where(x > 0, 1.0, alpha * np.exp(x))
        elif op == "silu":
            s = _sigmoid(x)
            d = s * (1 + x * (1 - s))
        elif op == "softplus":
            d = np.where(alpha * x > beta, 1.0, _sigmoid(alpha * x))
        elif op == "mish":
            t = np.tanh(_softplus(x, 1.0, np.inf))
            d = t + x * (1 - t * t) * _sigmoid(x)
        elif op == "hardtanh":
            d = np.where((x <= alpha) | (x >= beta), 0.0, 1.0)
        elif op == "smooth_l1":
            d = np.where(np.abs(x) < alpha, x / (alpha or 1), np.sign(x))
        elif op == "huber":
            d = np.clip(x, -alpha, alpha)
        elif op == "log_clamped":
            d = 1.0 / np.maximum(x, 1e-12)
        else:
            raise ValueError(f"unknown activation '{op}'")
        grad_input[...] = g * d


def _prelu_weight(x, weight):
    nw = weight.shape[0]
    C = x.shape[1] if x.ndim >= 2 else 1
    if nw not in (1, C):
        raise ValueError(
            f"prelu: weight has {nw} elements, expected 1 or the {C} channels of the input"
        )
    if nw == 1 or x.ndim < 2:
        return weight.reshape(())
    return weight.reshape((1, C) + (1,) * (x.ndim - 2))


def prelu_forward(x, weight, y):
    y[...] = np.where(x > 0, x, _prelu_weight(x, weight) * x)


def prelu_backward(x, weight, grad_output, grad_input, grad_weight):
    w = _prelu_weight(x, weight)
    pos = x > 0
    if grad_input is not None:
        grad_input[...] = np.where(pos, grad_output, w * grad_output)
    if grad_weight is not None:
        s = np.where(pos, 0, grad_output * x)
        if weight.shape[0] == 1 or x.ndim < 2:
            grad_weight[...] = s.sum()
        else:
            grad_weight[...] = s.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
