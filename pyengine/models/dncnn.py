"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017): a plain CNN that predicts the
noise of its input, so ``denoised = noisy - net(noisy)``.

Layers (``depth`` convolutions, all 3x3 / stride 1 / padding 1, so the output has the input's
size): conv + ReLU, then (conv + BatchNorm + ReLU) x (depth - 2), then conv. With ``bn=False``
(a trained model whose BatchNorms were folded) every conv has a bias instead. The layers live in
``self.layers`` (a Sequential), so state-dict keys are ``layers.<i>.weight`` etc.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import Any

import numpy as np

from pyengine import nn
from pyengine.autograd import no_grad
from pyengine.models.fused import run_sequential
from pyengine.nn.utils import fuse_conv_bn_sequential
from pyengine.tensor import Tensor


class DnCNN(nn.Module):
    def __init__(
        self,
        depth: int = 17,
        channels: int = 64,
        image_channels: int = 1,
        bn: bool = True,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if depth < 2 or channels < 1 or image_channels < 1:
            raise ValueError(
                f"DnCNN needs depth >= 2 and positive channel counts, got depth={depth}, "
                f"channels={channels}, image_channels={image_channels}"
            )
        self.depth, self.channels, self.image_channels, self.bn = (
            depth,
            channels,
            image_channels,
            bn,
        )
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(channels, eps=bn_eps))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(channels, image_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convolutions with zero biases, as in the paper's training code, except that
        the last conv starts at zero: the untrained network is then the identity denoiser
        (residual 0) and its loss starts at the noise variance. On the bundled images this turns
        the first few hundred steps from recovering a random residual into real progress."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        nn.init.zeros_(self.layers[-1].weight)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild this architecture."""
        return {
            "depth": self.depth,
            "channels": self.channels,
            "image_channels": self.image_channels,
            "bn": self.bn,
        }

    @property
    def margin(self) -> int:
        """Output pixels further than this from a tile's edge are exact (one pixel per conv)."""
        return self.depth

    def forward(self, x: Tensor) -> Tensor:
        # conv+ReLU and BN+ReLU pairs run fused (pyengine/models/fused.py); same result.
        return run_sequential(self.layers, x)

    def denoise(self, noisy: Tensor) -> Tensor:
        """``noisy - net(noisy)``, without recording a graph."""
        with no_grad():
            return noisy - run_sequential(self.layers, noisy)

    def fuse(self) -> DnCNN:
        """Fold every BatchNorm into its conv (eval semantics), in place; the result has the
        layout of ``DnCNN(..., bn=False)``, so its state dict loads into one."""
        fuse_conv_bn_sequential(self)
        self.bn = False
        return self

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> DnCNN:
        """Load the pretrained weights of /work/shared/data/weights (converted MatConvNet files):
        ``convNN_weight``/``convNN_bias``, ``bnNN_*`` for the explicit-BN model with its stored
        ``bn_eps``; ``num_conv`` and the weight shapes choose the architecture."""
        try:
            z = np.load(path, allow_pickle=False)
            keys = set(z.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"'{path}' is not a readable .npz file: {e}") from None
        try:
            num_conv = int(z["num_conv"])
            has_bn = bool(int(z["has_bn"]))
            eps = float(z["bn_eps"]) if "bn_eps" in keys else 1e-5
            w1 = z["conv01_weight"]
            model = cls(
                num_conv,
                int(w1.shape[0]),
                int(w1.shape[1]),
                bn=has_bn,
                bn_eps=eps if has_bn else 1e-5,
            )
            state: dict[str, np.ndarray] = {}
            convs = [n for n, m in model.layers.named_children() if isinstance(m, nn.Conv2d)]
            bns = {n: m for n, m in model.layers.named_children() if isinstance(m, nn.BatchNorm2d)}
            for i, name in enumerate(convs, start=1):
                state[f"layers.{name}.weight"] = z[f"conv{i:02d}_weight"]
                if model.layers[int(name)].bias is not None:
                    state[f"layers.{name}.bias"] = z[f"conv{i:02d}_bias"]
                bn_name = str(int(name) + 1)
                if bn_name in bns:
                    for ours, theirs in (
                        ("weight", "gamma"),
                        ("bias", "beta"),
                        ("running_mean", "running_mean"),
                        ("running_var", "running_var"),
                    ):
                        state[f"layers.{bn_name}.{ours}"] = z[f"bn{i:02d}_{theirs}"]
        except KeyError as e:
            raise ValueError(f"'{path}' is not a DnCNN weight file: missing key {e}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"'{path}' is damaged or truncated: {e}") from None
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ValueError(f"'{path}': {e}") from None
        missing = [
            k
            for k in model.state_dict()
            if k not in state and not k.endswith("num_batches_tracked")
        ]
        if missing:
            raise ValueError(f"'{path}' does not set {missing}")
        return model.eval()
