"""Devices and their kernels.

A device is a module of identically named kernels. ``Kernels`` looks a kernel up by attribute
name on the compiled module (``_cpu``, ``_cuda``) or on the NumPy twin (``numpy_ref``) and raises
``NotImplementedError`` naming the kernel and device when one is missing, so the Python layer never
branches on the device's name. ``Backend`` adds what a device needs besides kernels: allocation,
host transfers and layout copies (reshape, permute, slicing, concatenation).

float64 tensors always run on the NumPy twin: it is the reference that gradient checks use.
"""

from __future__ import annotations

import contextlib
import threading
from types import ModuleType
from typing import Any

import numpy as np

from pyengine.backend import numpy_ref

try:
    from pyengine import _cpu
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "pyengine's compiled CPU kernels (pyengine._cpu) are missing: install the package with "
        "`pip install .` from the repository root. Inside the source tree the local pyengine/ "
        "folder shadows the installed package: run from another directory, or build in place "
        "with scripts/build_inplace.sh"
    ) from exc


class MissingKernelError(NotImplementedError, AttributeError):
    """A kernel the device lacks: NotImplementedError for callers, and an AttributeError too, so
    that ``hasattr(kernels, name)`` answers False instead of raising."""


class Kernels:
    """Attribute access to the kernels of one device, with a clear error for a missing one."""

    def __init__(self, module: ModuleType | Any, device: str) -> None:
        self._module = module
        self._device = device

    def __getattr__(self, name: str) -> Any:
        try:
            fn = getattr(self._module, name)
        except AttributeError:
            raise MissingKernelError(f"{name} has no {self._device} kernel") from None
        setattr(self, name, fn)  # cache: later lookups skip __getattr__
        return fn


class Device:
    """A device name, ``torch.device``-like: ``Device("cpu")``, ``Device("cuda:0")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu", index: int | None = None) -> None:
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda', got {spec!r}")
        name, _, idx = spec.partition(":")
        if name not in ("cpu", "cuda"):
            raise ValueError(f"unknown device '{spec}': expected 'cpu' or 'cuda[:N]'")
        self.type = name
        self.index = int(idx) if idx else index
        if name == "cuda" and self.index is None:
            self.index = 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, TypeError):
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


class _State(threading.local):
    # A class default, so that kernels() reads it without getattr's AttributeError path (~1 us
    # per op) in threads that never entered use_reference.
    reference = False


_state = _State()


@contextlib.contextmanager
def use_reference(enabled: bool = True):
    """Run float32 CPU ops on the NumPy twin instead of the C++ kernels (for tests)."""
    prev = _state.reference
    _state.reference = enabled
    try:
        yield
    finally:
        _state.reference = prev


class CPUBackend:
    """Host memory: arrays are C-contiguous NumPy arrays."""

    name = "cpu"

    def __init__(self) -> None:
        self.native = Kernels(_cpu, "cpu")
        self.reference = Kernels(numpy_ref, "numpy")

    def kernels(self, dtype: np.dtype) -> Kernels:
        if dtype == np.float32 and not _state.reference:
            return self.native
        return self.reference

    # allocation and transfers
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def full(self, shape: tuple[int, ...], value: float, dtype: np.dtype) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, order="C")

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def scalar(self, value: float, dtype: np.dtype) -> np.ndarray:
        return np.asarray(value, dtype=dtype)

    # layout: every result is C-contiguous; np.asarray(order="C") keeps 0-d arrays 0-d, where
    # np.ascontiguousarray would promote them to shape (1,).
    def reshape(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return a.reshape(shape)

    def permute(self, a: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        return np.asarray(a.transpose(dims), order="C")

    def getitem(self, a: np.ndarray, index: Any) -> np.ndarray:
        return np.asarray(a[index], order="C")

    def index_add(self, out: np.ndarray, index: Any, values: np.ndarray) -> None:
        np.add.at(out, index, values)

    def setitem(self, a: np.ndarray, index: Any, values: Any) -> None:
        a[index] = values

    def cat(self, arrays: list[np.ndarray], dim: int) -> np.ndarray:
        return np.concatenate(arrays, axis=dim)

    def astype(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return a.astype(dtype)

    def copy(self, a: np.ndarray) -> np.ndarray:
        # Large float32 arrays (a leaf's first gradient when it cannot be taken as is) are copied
        # by the threaded kernel: NumPy's copy runs on one core, which leaves a 2-core machine's
        # memory bandwidth half used. Small ones are not worth waking the thread team.
        if a.dtype == np.float32 and a.size >= 1 << 16 and a.flags.c_contiguous:
            out = np.empty_like(a)
            self.kernels(a.dtype).copy(a, out)
            return out
        return a.copy()

    def copy_(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def random(self, gen: np.random.Generator, kind: str, shape, dtype, **kw) -> np.ndarray:
        if kind == "normal":
            return gen.standard_normal(shape, dtype=np.float64).astype(dtype)
        if kind == "uniform":
            return gen.random(shape, dtype=np.float64).astype(dtype)
        raise ValueError(kind)

    def synchronize(self) -> None:
        pass


_backends: dict[str, Any] = {"cpu": CPUBackend()}


def backend(device: Device) -> Any:
    be = _backends.get(device.type)
    if be is None:
        from pyengine import cuda

        be = cuda._backend()
        _backends[device.type] = be
    return be
