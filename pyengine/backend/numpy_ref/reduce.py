"""NumPy twins of csrc/reduce.cpp."""

import numpy as np

__all__ = [
    "sum_reduce",
    "max_reduce",
    "max_reduce_backward",
    "softmax_forward",
    "softmax_backward",
    "nll_forward",
    "nll_backward",
]


def sum_reduce(x, out):
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, out.shape)) if a != b)
    out[...] = x.sum(axis=axes, keepdims=True)


def max_reduce(x, values, indices, outer, D, inner):
    v = x.reshape(outer, D, inner)
    indices[...] = np.argmax(v, axis=1).reshape(indices.shape)
    values[...] = np.max(v, axis=1).reshape(values.shape)


def max_reduce_backward(grad_output, indices, grad_input, outer, D, inner):
    g = np.zeros((outer, D, inner), dtype=grad_input.dtype)
    np.put_along_axis(
        g,
        indices.reshape(outer, 1, inner),
        grad_output.reshape(outer, 1, inner),
        axis=1,
    )
    grad_input[...] = g.reshape(grad_input.shape)


def softmax_forward(x, y, outer, D, inner, log):
    v = x.reshape(outer, D, inner)
    if v.size == 0:  # nothing to normalise (max has no identity over an empty axis)
        return
    z = v - v.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    r = z - lse if log else np.exp(z - lse)
    y[...] = r.reshape(y.shape)


def softmax_backward(y, grad_output, grad_input, outer, D, inner, log):
    yv = y.reshape(outer, D, inner)
    g = grad_output.reshape(outer, D, inner)
    if log:
        r = g - np.exp(yv) * g.sum(axis=1, keepdims=True)
    else:
        r = yv * (g - (g * yv).sum(axis=1, keepdims=True))
    grad_input[...] = r.reshape(grad_input.shape)


def nll_forward(input, target, out):
    if np.any((target < 0) | (target >= input.shape[1])):
        raise ValueError(f"target out of bounds for {input.shape[1]} classes")
    out[...] = -input[np.arange(input.shape[0]), target]


def nll_backward(grad_output, target, grad_input):
    grad_input[...] = 0
    grad_input[np.arange(grad_input.shape[0]), target] = -grad_output
