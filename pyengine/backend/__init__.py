"""Kernel dispatch: devices are modules of identically named kernels (see device.py)."""

from pyengine.backend.device import Device, Kernels, backend, use_reference

__all__ = ["Device", "Kernels", "backend", "use_reference"]
