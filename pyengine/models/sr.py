"""Single-image super-resolution networks and a differentiable MATLAB-bicubic downsampler.

``VDSR`` (Kim, Lee and Lee, CVPR 2016): a plain conv stack on the bicubic-upsampled image that
predicts the missing detail, ``sr = up + net(up)``. ``SubPixelSR`` (Shi et al., CVPR 2016,
"ESPCN", with a global skip): convolutions at low resolution, a conv to ``C * r * r`` channels
and ``nn.PixelShuffle(r)``, added to the bilinear upsampling of the input. Both start as their
skip path (last conv zero), i.e. at the interpolated image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine import nn
from pyengine.autograd import no_grad
from pyengine.creation import from_numpy
from pyengine.nn import functional as F
from pyengine.tensor import Tensor


def _stack(cin: int, cout: int, channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, channels, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    layers.append(nn.Conv2d(channels, cout, 3, padding=1))
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class VDSR(nn.Module):
    upsampled_input = True

    def __init__(self, image_channels: int = 1, depth: int = 10, channels: int = 32) -> None:
        super().__init__()
        if depth < 2 or channels < 1 or image_channels < 1:
            raise ValueError(f"VDSR needs depth >= 2 and positive widths, got depth={depth}")
        self._cfg = {"image_channels": image_channels, "depth": depth, "channels": channels}
        self.depth = depth
        self.layers = _stack(image_channels, image_channels, channels, depth)

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    @property
    def margin(self) -> int:
        return self.depth

    def forward(self, up: Tensor) -> Tensor:
        return up + self.layers(up)

    def restore(self, up: Tensor) -> Tensor:
        with no_grad():
            return self(up)


class SubPixelSR(nn.Module):
    upsampled_input = False

    def __init__(
        self, scale: int = 2, image_channels: int = 1, depth: int = 6, channels: int = 32
    ) -> None:
        super().__init__()
        if scale < 1 or depth < 2 or channels < 1 or image_channels < 1:
            raise ValueError(
                f"SubPixelSR needs scale >= 1, depth >= 2 and positive widths, got "
                f"scale={scale}, depth={depth}"
            )
        self._cfg = {
            "scale": scale,
            "image_channels": image_channels,
            "depth": depth,
            "channels": channels,
        }
        self.scale = scale
        self.layers = _stack(image_channels, image_channels * scale * scale, channels, depth)
        self.shuffle = nn.PixelShuffle(scale)

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    def forward(self, lr: Tensor) -> Tensor:
        skip = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return skip + self.shuffle(self.layers(lr))

    def restore(self, lr: Tensor) -> Tensor:
        with no_grad():
            return self(lr)


class BicubicDownsample(nn.Module):
    """``pyengine.data.degrade.bicubic_downsample`` of (N, C, H, W) tensors as two matrix
    products, so that a loss can be taken through it (the deep image prior for SR). The
    matrices are constants, not parameters."""

    def __init__(self, height: int, width: int, scale: int) -> None:
        super().__init__()
        from pyengine.data.degrade import resize_matrix

        if height % scale or width % scale:
            raise ValueError(f"{height}x{width} is not a multiple of scale {scale}")
        self.out = (height // scale, width // scale)
        a_h = resize_matrix(height, self.out[0], 1.0 / scale)
        a_w = resize_matrix(width, self.out[1], 1.0 / scale)
        self.a_h_t = from_numpy(np.ascontiguousarray(a_h.T, np.float32))
        self.a_w_t = from_numpy(np.ascontiguousarray(a_w.T, np.float32))

    def to(self, *args: Any, **kwargs: Any) -> BicubicDownsample:
        super().to(*args, **kwargs)
        self.a_h_t, self.a_w_t = self.a_h_t.to(*args, **kwargs), self.a_w_t.to(*args, **kwargs)
        return self

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        oh, ow = self.out
        y = (x.reshape((n * c * h, w)) @ self.a_w_t).reshape((n * c, h, ow))
        y = y.transpose(1, 2).reshape((n * c * ow, h)) @ self.a_h_t
        return y.reshape((n * c, ow, oh)).transpose(1, 2).reshape((n, c, oh, ow))
