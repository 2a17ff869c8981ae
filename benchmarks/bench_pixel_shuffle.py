"""Pixel shuffle: ``F.pixel_shuffle`` (depth to space, the sub-pixel SR network's last layer) and
``F.pixel_unshuffle`` through pyengine's public API with autograd, against the NumPy twin (the
same calls under ``use_reference``) and PyTorch.

Two rows per case, as in bench_pool (whose ``case`` times these): "fwd" (no graph) and "f+b",
forward plus the input gradient (the backward of a shuffle is the unshuffle of the gradient).
GB/s counts the bytes a single-pass permutation must move, the input read and the output written
each way, so "% peak" is the share of the NumPy triad bandwidth (harness.py). The float32 results
of pyengine and PyTorch are checked against the float64 twin before anything is timed.

``python -m benchmarks [--quick] --only pixel_shuffle``; ``OMP_WAIT_POLICY=PASSIVE python -m
benchmarks.bench_pixel_shuffle`` prints the full table without saving it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.bench_pool import _plain_bytes, case
from benchmarks.harness import format_table

# name, input shape, op(functional module, x), output shape
CASES: list[tuple[str, tuple[int, int, int, int], Callable, tuple[int, int, int, int]]] = [
    (
        "pixel_shuffle r2",
        (16, 64, 64, 64),
        lambda m, x: m.pixel_shuffle(x, 2),
        (16, 16, 128, 128),
    ),
    (
        "pixel_shuffle r4",
        (16, 64, 32, 32),
        lambda m, x: m.pixel_shuffle(x, 4),
        (16, 4, 128, 128),
    ),
    (
        "pixel_unshuffle r2",
        (16, 16, 128, 128),
        lambda m, x: m.pixel_unshuffle(x, 2),
        (16, 64, 64, 64),
    ),
]
QUICK_BATCH = 4


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``python -m benchmarks`` (protocol in harness.py)."""
    rows = []
    for name, shape, fn, out in CASES:
        if quick:
            shape, out = (QUICK_BATCH, *shape[1:]), (QUICK_BATCH, *out[1:])
        rows += case(name, shape, fn, out, _plain_bytes, 3 if quick else 20)
    return rows


def main() -> None:
    print(format_table(run(False)))


if __name__ == "__main__":
    main()
