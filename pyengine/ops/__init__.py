"""Differentiable ops: one module per kernel family, each a set of Function subclasses plus the
snake_case wrappers that the public API re-exports."""

from pyengine.ops import (  # noqa: F401
    conv,
    elementwise,
    gemm,
    index,
    math,
    norm,
    pool,
    reduce,
    resample,
    shape,
    stats,
)
