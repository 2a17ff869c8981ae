"""``pyengine.models``: restoration networks (DnCNN, U-Net, multi-scale deblurring, VDSR and
sub-pixel super-resolution) and whole-image inference."""

from __future__ import annotations

from typing import Any

from pyengine.models.deblur import MultiScaleDeblur
from pyengine.models.dncnn import DnCNN
from pyengine.models.inference import denoise_array
from pyengine.models.sr import VDSR, BicubicDownsample, SubPixelSR
from pyengine.models.unet import UNet
from pyengine.nn import Module

MODELS: dict[str, type[Module]] = {"dncnn": DnCNN, "unet": UNet}
MODELS.update({"msdeblur": MultiScaleDeblur, "vdsr": VDSR, "subpixel": SubPixelSR})


def build_model(name: str, config: dict[str, Any]) -> Module:
    """Instantiate a registered architecture from its ``config()``."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    return MODELS[name](**config)


__all__ = ["DnCNN", "MODELS", "UNet", "build_model", "denoise_array"]
__all__ += ["BicubicDownsample", "MultiScaleDeblur", "SubPixelSR", "VDSR"]
