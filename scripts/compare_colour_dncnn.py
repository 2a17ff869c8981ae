"""Colour DnCNN vs grey DnCNN per channel at sigma 25 on colour images, PSNR over RGB.

Usage: python scripts/compare_colour_dncnn.py FOLDER NAME MODEL [NAME MODEL ...]
Image ``i`` (sorted) gets noise from ``np.random.default_rng(i)``, the same for every model; a
1-channel model denoises each channel separately (see docs/inverse_problems.md)."""

import sys

import numpy as np

from pyengine.cli.common import load_model
from pyengine.data import ImageFolder
from pyengine.metrics import psnr
from pyengine.models import denoise_array

folder = ImageFolder(sys.argv[1], 3)
models = {name: load_model(path)[0] for name, path in zip(sys.argv[2::2], sys.argv[3::2])}
rows = []
for i, (name, clean) in enumerate(zip(folder.names(), folder.load_all())):
    noise = np.random.default_rng(i).standard_normal(clean.shape) * 25 / 255
    noisy = (clean + noise).astype(np.float32)
    r = [psnr(np.clip(noisy, 0, 1), clean)]
    for m in models.values():
        if m.config().get("image_channels", 1) == 3:
            out = denoise_array(m, noisy)
        else:
            out = np.concatenate([denoise_array(m, noisy[c : c + 1]) for c in range(3)])
        r.append(psnr(np.clip(out, 0, 1), clean))
    rows.append(r)
    print(f"{name:26s} " + "  ".join(f"{v:7.3f}" for v in r))
print(f"{'mean':26s} " + "  ".join(f"{v:7.3f}" for v in np.mean(rows, 0)))
print("columns: noisy, " + ", ".join(models))
