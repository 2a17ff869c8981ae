"""U-Net (Ronneberger et al. 2015) for image-to-image tasks: (conv3x3 + BN + ReLU) x 2 blocks,
2x2 max-pool down, transpose-conv (or upsample + conv) up, and skip concatenation.

Channels are ``base * 2**level``; ``depth`` is the number of down-samplings. Any input size works:
the input is zero-padded on the bottom/right to a multiple of ``2**depth`` and the output cropped
back, so every skip connection lines up. With ``residual=True``, ``denoise`` returns
``noisy - net(noisy)`` as DnCNN does; otherwise the network output itself.
"""

from __future__ import annotations

from typing import Any

from pyengine import nn
from pyengine.autograd import no_grad
from pyengine.models.fused import run_sequential
from pyengine.nn import functional as F
from pyengine.nn.utils import fuse_conv_bn_sequential
from pyengine.ops.shape import cat
from pyengine.tensor import Tensor


def _block(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base: int = 32,
        up: str = "transpose",
        bn: bool = True,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if up not in ("transpose", "upsample"):
            raise ValueError(f"up must be 'transpose' or 'upsample', got {up!r}")
        if depth < 0 or base < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"UNet needs depth >= 0 and positive sizes, got depth={depth}, "
                f"base={base}, in={in_channels}, out={out_channels}"
            )
        self._cfg = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "depth": depth,
            "base": base,
            "up": up,
            "bn": bn,
            "residual": residual,
        }
        self.depth, self.residual = depth, residual
        ch = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_block(in_channels, ch[0], bn)]
            + [_block(ch[i - 1], ch[i], bn) for i in range(1, depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            if up == "transpose":
                self.up.append(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2))
            else:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                        nn.Conv2d(ch[i + 1], ch[i], 3, padding=1),
                    )
                )
            self.dec.append(_block(2 * ch[i], ch[i], bn))
        self.head = nn.Conv2d(ch[0], out_channels, 1)
        if residual:
            # Start as the identity denoiser (residual 0), as DnCNN does.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    @property
    def margin(self) -> int:
        """Tile overlap used by tiled inference (the receptive field is larger; 16 px per level
        keeps seams below visible levels)."""
        return 16 * (self.depth + 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects an (N, C, H, W) input, got shape {x.shape}")
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = []
        for i, block in enumerate(self.down):
            x = run_sequential(block, x if i == 0 else self.pool(x))  # fused pairs: fused.py
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = run_sequential(dec, cat([skips.pop(), up(x)], 1))
        y = self.head(x)
        return y[:, :, :h, :w] if ph or pw else y

    def denoise(self, noisy: Tensor) -> Tensor:
        with no_grad():
            out = self(noisy)
            return noisy - out if self.residual else out

    def fuse(self) -> UNet:
        """Fold each BatchNorm into its conv for inference, in place."""
        fuse_conv_bn_sequential(self)
        self._cfg["bn"] = False
        return self
