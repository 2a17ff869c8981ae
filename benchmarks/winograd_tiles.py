"""Tile-size study for csrc/conv_winograd.cpp: float32 error against a float64 reference and the
time of each pass, im2col vs Winograd F(2x2,3x3) vs F(4x4,3x3), on 64->64 3x3 pad-1 layers
(DnCNN 16x64x40x40, U-Net 4x64x128x128, a 512x512 inference image). Kernels called directly.
``--unet``: instead, im2col vs Winograd (the default tile) on every 3x3 layer shape of the U-Net
(depth 4, base 32, batch 4, 128x128 input), the table of ``benchmarks/README.md``.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.winograd_tiles [--unet]
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.harness import median_ms
from pyengine.backend import numpy_ref
from pyengine.backend.device import _cpu

SHAPES = [(16, 64, 40, 40), (4, 64, 128, 128), (1, 64, 512, 512)]
ALGOS = ("im2col", "winograd_f2", "winograd_f4")
GEO = (1, 1, 1, 1, 1, 1, 1)
# (C, K, H): input and output channels and plane size of the U-Net's 3x3 convs, batch 4
UNET = [
    (32, 32, 128),
    (64, 32, 128),
    (32, 64, 64),
    (64, 64, 64),
    (128, 64, 64),
    (64, 128, 32),
    (128, 128, 32),
    (256, 128, 32),
    (128, 256, 16),
    (256, 256, 16),
    (512, 256, 16),
    (256, 512, 8),
    (512, 512, 8),
]


def _passes(algo: str, x, w, b, gy):
    y, gx, gw = np.empty(gy.shape, np.float32), np.empty_like(x), np.empty_like(w)
    fns = (
        lambda: getattr(_cpu, f"conv2d_{algo}_forward")(x, w, b, y, *GEO),
        lambda: getattr(_cpu, f"conv2d_{algo}_backward_input")(gy, w, gx, *GEO),
        lambda: getattr(_cpu, f"conv2d_{algo}_backward_weight")(x, gy, gw, None, *GEO),
    )
    return fns, (y, gx, gw)


def _operands(rng, n: int, c: int, k: int, h: int, wd: int):
    """x (n, c, h, wd), w (k, c, 3, 3) scaled by 1/sqrt(fan-in), b (k,), gy (n, k, h, wd)."""
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    gy = rng.standard_normal((n, k, h, wd), dtype=np.float32)
    return x, w, b, gy


def unet() -> None:
    rng = np.random.default_rng(0)
    for c, k, h in UNET:
        x, w, b, gy = _operands(rng, 4, c, k, h, h)
        cols = []
        for algo in ("winograd", "im2col"):
            ms = [median_ms(f, 15, 1) for f in _passes(algo, x, w, b, gy)[0]]
            cols.append(f"{algo} " + "/".join(f"{t:.1f}" for t in ms))
        print(f"{c}->{k} @ {h}x{h}  fwd/bwd_in/bwd_w ms: " + "  ".join(cols), flush=True)


def main() -> None:
    if "--unet" in sys.argv[1:]:
        return unet()
    rng = np.random.default_rng(0)
    for n, c, h, wd in SHAPES:
        x, w, b, gy = _operands(rng, n, c, c, h, wd)
        refs = None
        if n * h * wd <= 16 * 40 * 40:  # float64 reference only where it takes seconds
            x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
            refs = [np.zeros(gy.shape), np.zeros(x.shape), np.zeros(w.shape)]
            numpy_ref.conv2d_im2col_forward(x64, w64, b.astype(np.float64), refs[0], *GEO)
            numpy_ref.conv2d_im2col_backward_input(gy64, w64, refs[1], *GEO)
            numpy_ref.conv2d_im2col_backward_weight(x64, gy64, refs[2], None, *GEO)
        for algo in ALGOS:
            fns, outs = _passes(algo, x, w, b, gy)
            ms = [median_ms(f, 5, 1) for f in fns]
            line = f"{n}x{c}x{h}x{wd} {algo:12s} fwd/bwd_in/bwd_w ms " + "/".join(
                f"{t:.1f}" for t in ms
            )
            if refs is not None:
                errs = [np.abs(o - r).max() / np.abs(r).max() for o, r in zip(outs, refs)]
                line += "  rel err " + "/".join(f"{e:.1e}" for e in errs)
            print(line, flush=True)


if __name__ == "__main__":
    main()
