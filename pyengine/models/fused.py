"""Fused execution of the models' ``nn.Sequential`` stacks, with the user's model code and
state-dict layout unchanged (the approach chosen for issue 12: an internal fusion of adjacent
modules at run time, not new module types). ``run_sequential(seq, x)`` equals ``seq(x)`` but runs

- ``Conv2d`` followed by ``ReLU`` as one ``conv2d_relu`` node (the ReLU is the conv kernel's
  epilogue; backward reuses the output as the ReLU mask), and
- ``BatchNorm2d`` followed by ``ReLU`` as one ``batch_norm(..., relu=True)`` node (the ReLU in
  place on the normalised output; one activation buffer and one graph node fewer).

Only plain modules fuse: exactly those classes (not subclasses), no ``forward`` replaced on the
instance (``nn.summary`` wraps each leaf's forward that way to record it), default padding mode,
a BatchNorm with running statistics and a momentum. Anything else runs as the module itself.
``nn.Sequential.forward`` runs through here, so every plain Sequential is fused.
"""

from __future__ import annotations

from typing import Any

from pyengine import nn
from pyengine.ops.conv import conv2d_relu
from pyengine.ops.norm import batch_norm
from pyengine.tensor import Tensor


def _own_forward(m: Any) -> bool:
    return "forward" not in m.__dict__


def _plain_relu(m: Any) -> bool:
    return type(m) is nn.ReLU and _own_forward(m)


def _plain_conv(m: Any) -> bool:
    return (
        type(m) is nn.Conv2d and _own_forward(m) and getattr(m, "padding_mode", "zeros") == "zeros"
    )


def _plain_bn(m: Any) -> bool:
    return (
        type(m) is nn.BatchNorm2d
        and _own_forward(m)
        and m.track_running_stats
        and m.running_mean is not None
        and m.momentum is not None
    )


def _bn_relu(bn: Any, x: Tensor) -> Tensor:
    """bn(x) then ReLU, with BatchNorm2d.forward's semantics for a module with running stats."""
    bn._check_input_dim(x)
    y = batch_norm(
        x,
        bn.running_mean,
        bn.running_var,
        bn.weight,
        bn.bias,
        bn.training,
        bn.momentum,
        bn.eps,
        relu=True,
    )
    if bn.training:
        bn.num_batches_tracked += 1
    return y


def run_sequential(seq: nn.Sequential, x: Tensor) -> Tensor:
    mods = list(seq.children())
    i = 0
    while i < len(mods):
        m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        if type(m) is nn.Sequential:
            x = run_sequential(m, x)
            i += 1
        elif _plain_relu(nxt) and _plain_conv(m):
            x = conv2d_relu(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
            i += 2
        elif _plain_relu(nxt) and _plain_bn(m):
            x = _bn_relu(m, x)
            i += 2
        else:
            x = m(x)
            i += 1
    return x
