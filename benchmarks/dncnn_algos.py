"""The pretrained DnCNN (sigma 25) on Set12 with every conv forced to one algorithm: mean PSNR,
wall time, and the largest difference of each algorithm's output from the first one's.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.dncnn_algos im2col winograd
"""

from __future__ import annotations

import sys
import time

import numpy as np

from pyengine.cli.restore import evaluate_set
from pyengine.data import ImageFolder
from pyengine.models import DnCNN, denoise_array
from pyengine.ops import conv as conv_ops
from tests.shared_data import shared


def _force(algo: str) -> None:
    """The autotuner's only candidate: ``algo`` where it applies, im2col elsewhere."""
    orig = conv_ops._candidates

    def only(ctx, pass_="fwd"):
        return [algo] if algo in orig(ctx, pass_) else ["im2col"]

    conv_ops._candidates = only
    conv_ops._tuned.clear()


def main(algos: list[str]) -> None:
    model = DnCNN.from_npz(shared("weights", "dncnn_s25.npz"))
    images = ImageFolder(shared("testsets", "Set12"))
    first = np.asarray(images[0][0] if isinstance(images[0], tuple) else images[0], np.float32)
    first = first.reshape(1, *first.shape[-2:])
    noisy = first + np.random.default_rng(0).standard_normal(first.shape, np.float32) * 25 / 255
    outs = {}
    orig = conv_ops._candidates
    for algo in algos:
        _force(algo)
        t0 = time.perf_counter()
        rows = evaluate_set(model, images, 25.0, tile=0)
        dt = time.perf_counter() - t0
        print(f"{algo}: Set12 sigma 25 PSNR {np.mean([r[2] for r in rows]):.4f} dB in {dt:.0f} s")
        outs[algo] = denoise_array(model, noisy, tile=0)
        conv_ops._candidates = orig
    for algo in algos[1:]:
        diff = float(np.abs(outs[algo] - outs[algos[0]]).max())
        print(f"max |{algo} - {algos[0]}| on the first image: {diff:.2g}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["im2col", "winograd"])
