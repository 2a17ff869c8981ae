"""NumPy twins of csrc/elementwise.cpp."""

import numpy as np

__all__ = [
    "axpby",
    "binary_forward",
    "binary_math_forward",
    "clamp_backward",
    "clamp_forward",
    "copy",
    "math_backward",
    "math_forward",
    "relu_mask_backward",
    "relu_mask_forward",
    "unary_backward",
    "unary_forward",
    "where_forward",
]

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
}


def binary_forward(op, a, b, out):
    with np.errstate(all="ignore"):
        out[...] = _BINARY[op](a, b)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def unary_forward(op, x, y, alpha=0.0):
    with np.errstate(all="ignore"):
        y[...] = {
            "relu": lambda: np.where(x <= 0, 0, x),
            "leaky_relu": lambda: np.where(x > 0, x, alpha * x),
            "sigmoid": lambda: _sigmoid(x),
            "tanh": lambda: np.tanh(x),
            "exp": lambda: np.exp(x),
            "log": lambda: np.log(x),
            "sqrt": lambda: np.sqrt(x),
            "neg": lambda: -x,
            "abs": lambda: np.abs(x),
            "pow": lambda: np.power(x, alpha),
        }[op]()


def relu_mask_forward(x, y, mask):
    """y = relu(x); mask: bit i % 8 of byte i // 8 set where x[i] passes its gradient."""
    passes = ~(x <= 0)
    y[...] = np.where(passes, x, 0)
    mask[...] = np.packbits(passes.ravel(), bitorder="little")


def relu_mask_backward(mask, grad_output, grad_input):
    n = grad_output.size
    passes = np.unpackbits(mask, count=n, bitorder="little").reshape(grad_output.shape)
    grad_input[...] = np.where(passes.astype(bool), grad_output, 0)


def unary_backward(op, saved, grad_output, grad_input, alpha=0.0):
    s, g = saved, grad_output
    with np.errstate(all="ignore"):
        grad_input[...] = {
            "relu": lambda: np.where(s <= 0, 0, g),
            "leaky_relu": lambda: np.where(s > 0, g, alpha * g),
            "sigmoid": lambda: g * s * (1 - s),
            "tanh": lambda: g * (1 - s * s),
            "exp": lambda: g * s,
            "log": lambda: g / s,
            "sqrt": lambda: g * 0.5 / s,
            "neg": lambda: -g,
            "abs": lambda: g * np.sign(s),
            "pow": lambda: g * alpha * np.power(s, alpha - 1),
        }[op]()


def axpby(x, y, a, b):
    y[...] = a * x + b * y


def copy(x, y):
    y.reshape(-1)[...] = x.reshape(-1)


def binary_math_forward(op, a, b, out):
    # np.floor_divide / np.remainder use the same fmod-based rule as the C++ kernel.
    with np.errstate(all="ignore"):
        out[...] = {"floor_divide": np.floor_divide, "remainder": np.remainder}[op](a, b)


def math_forward(op, x, y, alpha=0.0):
    with np.errstate(all="ignore"):
        y[...] = {
            # torch.sign(NaN) is 0, np.sign(NaN) NaN: compare like the C++ kernel.
            "sign": lambda: (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype),
            "round": lambda: np.round(x),
            "floor": lambda: np.floor(x),
            "ceil": lambda: np.ceil(x),
            "trunc": lambda: np.trunc(x),
            "sin": lambda: np.sin(x),
            "cos": lambda: np.cos(x),
            "log1p": lambda: np.log1p(x),
            "expm1": lambda: np.expm1(x),
        }[op]()


def math_backward(op, saved, grad_output, grad_input, alpha=0.0):
    s, g = saved, grad_output
    with np.errstate(all="ignore"):
        grad_input[...] = {
            "sign": lambda: np.zeros_like(g),
            "round": lambda: np.zeros_like(g),
            "floor": lambda: np.zeros_like(g),
            "ceil": lambda: np.zeros_like(g),
            "trunc": lambda: np.zeros_like(g),
            "sin": lambda: g * np.cos(s),
            "cos": lambda: -g * np.sin(s),
            "log1p": lambda: g / (1 + s),
            "expm1": lambda: g * (s + 1),
        }[op]()


def where_forward(cond, a, b, out):
    out[...] = np.where(cond, a, b)


def clamp_forward(x, y, lo, hi):
    # Written as the C++ kernel's comparisons so that NaN passes through.
    v = np.where(x < lo, lo, x)
    y[...] = np.where(v > hi, hi, v)


def clamp_backward(x, grad_output, grad_input, lo, hi):
    grad_input[...] = np.where((x >= lo) & (x <= hi), grad_output, 0)
