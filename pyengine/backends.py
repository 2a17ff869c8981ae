"""Global switches of the kernels' algorithm choice, like ``torch.backends``.

``conv_benchmark``: when True (the default), a convolution called with ``algo="auto"`` times its
algorithms on the first call of each pass for a new shape and reuses the fastest (as
``torch.backends.cudnn.benchmark``); when False it picks by a fixed heuristic, so results do not
depend on timings. An explicit ``algo=`` always wins.

``allow_winograd``: when True (the default), ``algo="auto"`` may run a 3x3 stride-1 convolution
with Winograd F(4x4,3x3), timed or by the heuristic. Its float32 rounding error is ~6x im2col's
(5.5e-6 against 8.6e-7 of the largest output on the DnCNN layer, csrc/conv_winograd.cpp), far below
training noise; set False to keep ``auto`` to direct and im2col, as
``torch.backends.cuda.matmul.allow_tf32`` trades accuracy for speed.

``use_deterministic_algorithms(True)`` (``pyengine.use_deterministic_algorithms``, as PyTorch names
it) makes every run of a CPU program with the same inputs, seed and thread count give
bit-identical results, across processes too. The only cross-process difference of the CPU
kernels is the conv benchmark: which algorithm wins a timing race differs from process to
process, and the direct and im2col algorithms sum in different orders, so losses drift apart
(2e-4 relative after 12 steps of ``pyengine train dncnn`` on 2 threads). Deterministic mode
therefore overrides ``conv_benchmark`` with the heuristic. Reductions are deterministic in either
mode (each thread's partial sums are combined in a fixed order); results can still differ
between thread counts. On CUDA, the backward passes that add into their output with atomicAdd
(max/average pooling, upsampling) raise a RuntimeError in deterministic mode, as PyTorch's do
(a warning with ``warn_only=True``).
"""

import warnings
from typing import Any

conv_benchmark: bool = True
allow_winograd: bool = True
_deterministic: bool = False
_warn_only: bool = False


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Choose kernel algorithms by fixed rules instead of timings (``mode=True``); an operation
    without a deterministic implementation then raises (or warns, with ``warn_only``)."""
    global _deterministic, _warn_only
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms expects a bool, got {type(mode).__name__}")
    _deterministic, _warn_only = mode, bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def conv_benchmark_enabled() -> bool:
    """Whether the conv autotuner may choose by timing (off in deterministic mode)."""
    return conv_benchmark and not _deterministic


def alert_not_deterministic(op: str, device: Any) -> None:
    """Called by an operation whose CUDA kernel accumulates with atomicAdd (its float sums then
    depend on thread scheduling)."""
    if _deterministic and getattr(device, "type", device) == "cuda":
        msg = (
            f"{op} on CUDA accumulates with atomicAdd and has no deterministic implementation, "
            "but pyengine.use_deterministic_algorithms(True) is on (pass warn_only=True to allow "
            "it with a warning)"
        )
        if not _warn_only:
            raise RuntimeError(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
