"""Global switches of the kernels' algorithm choice, like ``torch.backends``.

``conv_benchmark``: when True (the default), a convolution called with ``algo="auto"`` times its
algorithms on the first call of each pass for a new shape and reuses the fastest (as
``torch.backends.cudnn.benchmark``); when False it picks by a fixed heuristic, so results do not
depend on timings. An explicit ``algo=`` always wins.

``use_deterministic_algorithms(True)`` (``pyengine.use_deterministic_algorithms``, as PyTorch names
it) makes every run of a program with the same inputs, seed and thread count give bit-identical
results, across processes too. The only cross-process difference of the CPU kernels is the conv
benchmark: which algorithm wins a timing race differs from process to process, and the direct and
im2col algorithms sum in different orders, so losses drift apart (about 1e-4 relative after a few
hundred steps). Deterministic mode therefore overrides ``conv_benchmark`` with the heuristic.
Reductions are deterministic in either mode (each thread's partial sums are combined in a fixed
order); results can still differ between thread counts.
"""

conv_benchmark: bool = True
_deterministic: bool = False


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Choose kernel algorithms by fixed rules instead of timings (``mode=True``). ``warn_only``
    is accepted for PyTorch compatibility; pyengine has no operation without a deterministic
    algorithm on the CPU, so it changes nothing."""
    global _deterministic
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms expects a bool, got {type(mode).__name__}")
    _deterministic = mode


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def conv_benchmark_enabled() -> bool:
    """Whether the conv autotuner may choose by timing (off in deterministic mode)."""
    return conv_benchmark and not _deterministic
