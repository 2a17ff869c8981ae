"""Tile-size study for csrc/conv_winograd.cpp: float32 error against a float64 reference and the
time of each pass, im2col vs Winograd F(2x2,3x3) vs F(4x4,3x3), on 64->64 3x3 pad-1 layers
(DnCNN 16x64x40x40, U-Net 4x64x128x128, a 512x512 inference image). Kernels called directly.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.winograd_tiles
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness import median_ms
from pyengine.backend import numpy_ref
from pyengine.backend.device import _cpu

SHAPES = [(16, 64, 40, 40), (4, 64, 128, 128), (1, 64, 512, 512)]
ALGOS = ("im2col", "winograd_f2", "winograd_f4")
GEO = (1, 1, 1, 1, 1, 1, 1)


def _passes(algo: str, x, w, b, gy):
    y, gx, gw = np.empty(gy.shape, np.float32), np.empty_like(x), np.empty_like(w)
    fns = (
        lambda: getattr(_cpu, f"conv2d_{algo}_forward")(x, w, b, y, *GEO),
        lambda: getattr(_cpu, f"conv2d_{algo}_backward_input")(gy, w, gx, *GEO),
        lambda: getattr(_cpu, f"conv2d_{algo}_backward_weight")(x, gy, gw, None, *GEO),
    )
    return fns, (y, gx, gw)


def main() -> None:
    rng = np.random.default_rng(0)
    for n, c, h, wd in SHAPES:
        x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        gy = rng.standard_normal((n, c, h, wd), dtype=np.float32)
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
