"""NumPy twins of csrc/norm.cpp (batch normalisation over dim 1 of x (N, C, *)) and
csrc/norm_group.cpp (group/instance norm per sample and group, layer norm per row)."""

import numpy as np

__all__ = [
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward",
    "batchnorm_relu_forward_train",
    "batchnorm_relu_backward",
    "groupnorm_forward",
    "groupnorm_backward",
    "layernorm_forward",
    "layernorm_backward",
]


def _chan(a, C):
    """A (C,) array broadcast against x viewed as (N, C, HW)."""
    return a.reshape(1, C, 1)


def _view(x):
    if x.ndim < 2:
        raise ValueError(f"input must have at least 2 dims (N, C, ...), got shape {x.shape}")
    # -1 cannot be inferred for an empty tensor; spell the trailing size out.
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))


def batchnorm_forward_train(
    x, weight, bias, y, save_mean, save_invstd, running_mean, running_var, momentum, eps
):
    v = _view(x)
    N, C, HW = v.shape
    M = N * HW
    if M <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.shape}"
        )
    mean = v.mean(axis=(0, 2))
    d = v - _chan(mean, C)
    var = (d * d).mean(axis=(0, 2))  # two-pass: stable for |mean| >> std
    invstd = 1.0 / np.sqrt(var + eps)
    save_mean[...] = mean
    save_invstd[...] = invstd
    if running_mean is not None:
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * var * (M / (M - 1))
    _affine(d, invstd, weight, bias, y)


def batchnorm_forward_eval(
    x, running_mean, running_var, weight, bias, y, save_mean, save_invstd, eps
):
    v = _view(x)
    C = v.shape[1]
    invstd = 1.0 / np.sqrt(running_var + eps)
    save_mean[...] = running_mean
    save_invstd[...] = invstd
    _affine(v - _chan(running_mean, C), invstd, weight, bias, y)


def _affine(d, invstd, weight, bias, y):
    C = d.shape[1]
    scale = invstd if weight is None else invstd * weight
    r = d * _chan(scale, C)
    if bias is not None:
        r = r + _chan(bias, C)
    y[...] = r.reshape(y.shape)


def batchnorm_backward(
    grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, training
):
    g = _view(grad_output)
    N, C, HW = g.shape
    M = N * HW
    xhat = (_view(x) - _chan(save_mean, C)) * _chan(save_invstd, C)
    sg = g.sum(axis=(0, 2))
    sgx = (g * xhat).sum(axis=(0, 2))
    if grad_bias is not None:
        grad_bias[...] = sg
    if grad_weight is not None:
        grad_weight[...] = sgx
    if grad_input is not None:
        k = save_invstd if weight is None else save_invstd * weight
        if training:
            r = _chan(k, C) * (g - _chan(sg / M, C) - xhat * _chan(sgx / M, C))
        else:
            r = _chan(k, C) * g
        grad_input[...] = r.reshape(grad_input.shape)


def batchnorm_relu_forward_train(
    x, weight, bias, y, save_mean, save_invstd, running_mean, running_var, momentum, eps
):
    """relu(batchnorm_forward_train(...)): the same statistics and running-statistics update."""
    batchnorm_forward_train(
        x, weight, bias, y, save_mean, save_invstd, running_mean, running_var, momentum, eps
    )
    np.maximum(y, 0, out=y)


def batchnorm_relu_backward(
    grad_output, output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias
):
    """Training-mode batchnorm_backward of grad_output masked by ReLU's (output > 0)."""
    if output.shape != x.shape:
        raise ValueError(f"output must have the shape of x {x.shape}, got {output.shape}")
    g = np.where(output > 0, grad_output, 0).astype(grad_output.dtype, copy=False)
    batchnorm_backward(
        g, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, True
    )


def _groups(x, groups):
    N, C = x.shape[:2]
    if groups < 1 or C % groups:
        raise ValueError(f"num_groups must divide the {C} channels, got {groups}")
    return x.reshape(N, groups, -1)


def _rows_stats(v, eps):
    """Mean and invstd over the last axis (biased variance, two passes)."""
    mean = v.mean(axis=-1) if v.shape[-1] else np.zeros(v.shape[:-1], v.dtype)
    d = v - mean[..., None]
    var = (d * d).mean(axis=-1) if v.shape[-1] else np.zeros(v.shape[:-1], v.dtype)
    return mean, 1.0 / np.sqrt(var + eps), d


def groupnorm_forward(x, weight, bias, y, save_mean, save_invstd, groups, eps):
    v = _groups(x, groups)
    mean, invstd, d = _rows_stats(v, eps)
    save_mean[...] = mean
    save_invstd[...] = invstd
    xhat = (d * invstd[..., None]).reshape(_view(x).shape)
    C = x.shape[1]
    if weight is not None:
        xhat = xhat * _chan(weight, C)
    if bias is not None:
        xhat = xhat + _chan(bias, C)
    y[...] = xhat.reshape(y.shape)


def groupnorm_backward(
    grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, groups
):
    N, C = x.shape[:2]
    g3 = _view(grad_output)
    xhat = ((_groups(x, groups) - save_mean[..., None]) * save_invstd[..., None]).reshape(
        _view(x).shape
    )
    if grad_weight is not None:
        grad_weight[...] = (g3 * xhat).sum(axis=(0, 2))
    if grad_bias is not None:
        grad_bias[...] = g3.sum(axis=(0, 2))
    if grad_input is not None:
        dxh = g3 if weight is None else g3 * _chan(weight, C)
        dxh = dxh.reshape(N, groups, -1)
        xh = xhat.reshape(N, groups, -1)
        L = max(dxh.shape[-1], 1)
        r = save_invstd[..., None] * (
            dxh
            - dxh.sum(axis=-1, keepdims=True) / L
            - xh * (dxh * xh).sum(axis=-1, keepdims=True) / L
        )
        grad_input[...] = r.reshape(grad_input.shape)


def layernorm_forward(x, weight, bias, y, save_mean, save_invstd, eps):
    mean, invstd, d = _rows_stats(x, eps)
    save_mean[...] = mean
    save_invstd[...] = invstd
    r = d * invstd[:, None]
    if weight is not None:
        r = r * weight
    if bias is not None:
        r = r + bias
    y[...] = r


def layernorm_backward(
    grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias
):
    xhat = (x - save_mean[:, None]) * save_invstd[:, None]
    g = grad_output
    if grad_weight is not None:
        grad_weight[...] = (g * xhat).sum(axis=0)
    if grad_bias is not None:
        grad_bias[...] = g.sum(axis=0)
    if grad_input is not None:
        dxh = g if weight is None else g * weight
        K = max(x.shape[1], 1)
        grad_input[...] = save_invstd[:, None] * (
            dxh
            - dxh.sum(axis=1, keepdims=True) / K
            - xhat * (dxh * xhat).sum(axis=1, keepdims=True) / K
        )
