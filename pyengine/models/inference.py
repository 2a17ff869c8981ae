"""Whole-image inference for restoration models, tiled so that large images fit in memory.

Each tile is extended by the model's ``margin`` on every side that is inside the image; the
extension is computed and thrown away. For DnCNN (margin = number of convs) the stitched result is
then exactly the untiled one, since a zero-padded border perturbs only one more pixel per conv.
"""

from __future__ import annotations

import copy

import numpy as np

from pyengine.autograd import no_grad
from pyengine.creation import from_numpy
from pyengine.nn import Module


def _run(model: Module, x: np.ndarray, device: str) -> np.ndarray:
    t = from_numpy(np.ascontiguousarray(x[None], dtype=np.float32))
    if device != "cpu":
        t = t.to(device)
    return model.denoise(t).cpu().numpy()[0]


def _folded(model: Module) -> Module:
    """An eval-mode model with every BatchNorm folded into its conv (``model.fuse()``, on a copy,
    so a model in training keeps its BatchNorms): checkpoints from ``pyengine train`` then run as
    the shipped pretrained weights do, conv + bias + ReLU per layer with no BatchNorm pass."""
    from pyengine.nn import BatchNorm2d

    has_bn = any(isinstance(m, BatchNorm2d) for m in model.modules())
    if not has_bn or model.training or not hasattr(model, "fuse"):
        return model
    return copy.deepcopy(model).fuse()


def denoise_array(
    model: Module, noisy: np.ndarray, tile: int = 512, device: str = "cpu"
) -> np.ndarray:
    """``model.denoise`` of a (C, H, W) float array, in tiles of at most ``tile`` x ``tile``
    output pixels (``tile`` <= 0: one piece). Returns float32 (C, H, W), not clipped."""
    if noisy.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {noisy.shape}")
    c, h, w = noisy.shape
    model = _folded(model)
    with no_grad():
        if tile <= 0 or (h <= tile and w <= tile):
            return _run(model, noisy, device)
        m = int(getattr(model, "margin", 32))
        out = np.empty((c, h, w), np.float32)
        for i in range(0, h, tile):
            for j in range(0, w, tile):
                i0, j0 = max(0, i - m), max(0, j - m)
                i1, j1 = min(h, i + tile + m), min(w, j + tile + m)
                y = _run(model, noisy[:, i0:i1, j0:j1], device)
                th, tw = min(tile, h - i), min(tile, w - j)
                out[:, i : i + th, j : j + tw] = y[:, i - i0 : i - i0 + th, j - j0 : j - j0 + tw]
        return out
