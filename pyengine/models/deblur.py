"""Multi-scale coarse-to-fine deblurring network, in the spirit of Nah, Kim and Lee, "Deep
Multi-scale Convolutional Neural Network for Dynamic Scene Deblurring" (CVPR 2017), sized for
2 CPU cores.

The blurred input is average-pooled to ``scales`` levels (full, 1/2, 1/4, ...). The coarsest
level sees its blurred image; every finer level sees its blurred image concatenated with the
bilinearly upsampled estimate of the level below. Each level is conv + ReLU, ``blocks`` residual
blocks (conv-ReLU-conv + skip), and a conv whose output is added to that level's blurred input;
that last conv starts at zero, so the untrained network returns its input. ``forward`` returns
the estimates from coarsest to finest, so a loss can be put at every scale (Nah et al.'s
multi-scale loss); ``restore`` returns the finest. Inputs of any size: padded (replicate) to a
multiple of ``2**(scales-1)`` and cropped back.
"""

from __future__ import annotations

from typing import Any

from pyengine import nn
from pyengine.autograd import no_grad
from pyengine.nn import functional as F
from pyengine.ops.shape import cat
from pyengine.tensor import Tensor


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class _Level(nn.Module):
    def __init__(self, cin: int, cout: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(cin, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, cout, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.body(F.relu(self.head(x))))


class MultiScaleDeblur(nn.Module):
    def __init__(
        self, image_channels: int = 1, channels: int = 32, blocks: int = 3, scales: int = 3
    ) -> None:
        super().__init__()
        if image_channels < 1 or channels < 1 or blocks < 0 or scales < 1:
            raise ValueError(
                f"MultiScaleDeblur needs positive sizes, got image_channels={image_channels}, "
                f"channels={channels}, blocks={blocks}, scales={scales}"
            )
        self._cfg = {
            "image_channels": image_channels,
            "channels": channels,
            "blocks": blocks,
            "scales": scales,
        }
        c = image_channels
        self.scales = scales
        self.levels = nn.ModuleList(
            [_Level(c if s == 0 else 2 * c, c, channels, blocks) for s in range(scales)]
        )

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    @property
    def margin(self) -> int:
        """Tile overlap for tiled inference: the receptive field at the coarsest level."""
        return (2 * len(self.levels[0].body) + 2) * 2 ** (self.scales - 1) + 8

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 4:
            raise ValueError(f"MultiScaleDeblur expects (N, C, H, W), got shape {x.shape}")
        h, w = x.shape[-2:]
        m = 2 ** (self.scales - 1)
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        pyramid = [x]
        for _ in range(self.scales - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        outs: list[Tensor] = []
        for s, level in enumerate(self.levels):
            b = pyramid[self.scales - 1 - s]
            inp = b
            if outs:
                up = F.interpolate(outs[-1], size=tuple(b.shape[-2:]), mode="bilinear")
                inp = cat([b, up], 1)
            outs.append(b + level(inp))
        if ph or pw:
            outs[-1] = outs[-1][:, :, :h, :w]
        return outs

    def restore(self, x: Tensor) -> Tensor:
        with no_grad():
            return self(x)[-1]


def multiscale_targets(sharp: Tensor, scales: int) -> list[Tensor]:
    """The sharp image at each level, coarsest first, pooled as the network pools its input."""
    out = [sharp]
    for _ in range(scales - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out[::-1]
