"""Model utilities: folding eval-mode BatchNorm into the preceding convolution.

For ``y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` the folded convolution has
``W' = W * gamma / s`` (per output channel) and ``b' = (b - mean) * gamma / s + beta`` with
``s = sqrt(var + eps)``; it computes the same function with one layer fewer. The arithmetic is
done in float64 and rounded once, so the folded model matches the original to float32 rounding.
"""

from __future__ import annotations

import numpy as np

from pyengine.nn.module import Module


def fuse_conv_bn_weights(
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight, bias) as float32 arrays; ``gamma``/``beta`` None mean a non-affine BN."""
    w = np.asarray(weight, np.float64)
    k = w.shape[0]
    b = np.zeros(k) if bias is None else np.asarray(bias, np.float64)
    g = np.ones(k) if gamma is None else np.asarray(gamma, np.float64)
    be = np.zeros(k) if beta is None else np.asarray(beta, np.float64)
    scale = g / np.sqrt(np.asarray(running_var, np.float64) + float(eps))
    w2 = w * scale.reshape((k,) + (1,) * (w.ndim - 1))
    b2 = (b - np.asarray(running_mean, np.float64)) * scale + be
    return w2.astype(np.float32), b2.astype(np.float32)


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def fuse_conv_bn(conv: Module, bn: Module) -> Module:
    """A new Conv2d (with a bias) equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    from pyengine.nn import Conv2d

    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fuse_conv_bn needs a BatchNorm with running statistics")
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"fuse_conv_bn: BatchNorm has {bn.num_features} features but the conv has "
            f"{conv.out_channels} output channels"
        )
    w, b = fuse_conv_bn_weights(
        _np(conv.weight),
        _np(conv.bias),
        _np(bn.running_mean),
        _np(bn.running_var),
        bn.eps,
        _np(bn.weight),
        _np(bn.bias),
    )
    fused = Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    )
    fused.load_state_dict({"weight": w, "bias": b})
    return fused.to(conv.weight.device)


def fuse_conv_bn_sequential(module: Module) -> Module:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d inside any Sequential of
    ``module`` (the pair becomes one Conv2d; later layers are renumbered). Returns ``module``."""
    from pyengine.nn import BatchNorm2d, Conv2d, Sequential

    for m in list(module.modules()):
        if not isinstance(m, Sequential):
            continue
        layers = list(m)
        out: list[Module] = []
        i = 0
        while i < len(layers):
            cur = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(cur, Conv2d) and isinstance(nxt, BatchNorm2d):
                out.append(fuse_conv_bn(cur, nxt))
                i += 2
            else:
                out.append(cur)
                i += 1
        if len(out) != len(layers):
            m._modules.clear()
            for j, layer in enumerate(out):
                m.add_module(str(j), layer)
    return module


from pyengine.nn.clip_grad import (  # noqa: E402
    clip_grad_norm_,
    clip_grad_value_,
    parameters_to_vector,
    vector_to_parameters,
)

__all__ = ["fuse_conv_bn", "fuse_conv_bn_sequential", "fuse_conv_bn_weights"]
__all__ += ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
