"""``pyengine.cuda``: the CUDA device, when the ``_cuda`` extension was built and a GPU is present.

On machines without nvcc or without a GPU everything here answers cleanly: ``is_available()`` is
False and moving a tensor to "cuda" raises a RuntimeError that says why.
"""

from __future__ import annotations

from typing import Any

try:
    from pyengine import _cuda
except ImportError as exc:  # built without nvcc, or the CUDA runtime is missing
    _cuda = None
    _import_error = str(exc)
else:
    _import_error = ""


def unavailable_reason() -> str:
    if _cuda is None:
        return f"the CUDA extension is not built ({_import_error or 'nvcc was not found'})"
    if _cuda.device_count() == 0:
        return "the CUDA extension is built but no GPU is visible"
    return ""


def is_built() -> bool:
    return _cuda is not None


def is_available() -> bool:
    return _cuda is not None and _cuda.device_count() > 0


def device_count() -> int:
    return _cuda.device_count() if _cuda is not None else 0


def _require() -> Any:
    if not is_available():
        raise RuntimeError(f"CUDA is not available: {unavailable_reason()}")
    return _cuda


def synchronize() -> None:
    _require().synchronize()


def memory_allocated() -> int:
    return _require().memory_allocated()


def max_memory_allocated() -> int:
    return _require().max_memory_allocated()


def empty_cache() -> None:
    _require().empty_cache()


def set_allow_tf32(enabled: bool) -> None:
    """Let matrix products use TF32 tensor cores (10-bit mantissa inputs, FP32 accumulation)."""
    _require().set_allow_tf32(bool(enabled))


def _backend() -> Any:
    _require()
    from pyengine.backend.cuda_backend import CUDABackend

    return CUDABackend(_cuda)
