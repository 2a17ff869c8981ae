"""pyengine: a PyTorch-shaped tensor engine whose kernels are hand-written C++ and CUDA."""

import os as _os

# Idle OpenMP workers sleep instead of spinning for long unless the user chose otherwise: a
# spinning worker burns its time slice, so on a busy machine (or next to PyTorch's own OpenMP
# pool) the scheduler runs it late and every parallel kernel waits a tick for it (1M-element ops
# measured 25x slower with libgomp's default ~3 ms of spinning). Before sleeping they spin
# 10,000 rounds (about 0.1 ms; GNU OpenMP honours GOMP_SPINCOUNT under PASSIVE too), so that
# back-to-back kernels find them awake: a 256^3 sgemm took 0.223 ms with sleeping workers, each
# call waiting for the OS to wake one, and 0.178 ms with this (NumPy: 0.19-0.20 ms; `python -m
# benchmarks.harness benchmarks.bench_gemm:work pyengine '[256,256,256]' 300`). The runtime
# reads both when the extension loads it, i.e. on the imports below.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from pyengine import autograd, backends, cuda, nn, optim, random  # noqa: E402,I001  (after the core is defined)
from pyengine.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from pyengine.backend import Device as device
from pyengine.creation import (
    arange,
    empty,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from pyengine.ops.elementwise import abs, exp, log, relu, sigmoid, sqrt, tanh  # noqa: A004
from pyengine.ops.gemm import matmul
from pyengine.ops.reduce import log_softmax, max, mean, softmax, sum  # noqa: A004
from pyengine.ops.shape import cat, flatten, permute, reshape, stack, transpose
from pyengine.serialization import load, save
from pyengine.creation import empty_like, eye, full_like, linspace, rand_like, randint_like
from pyengine.ops.index import chunk, cumsum, flip, masked_fill, roll, sort, split, topk, unbind
from pyengine.ops.index import where
from pyengine.ops.math import ceil, clamp, clip, cos, expm1, floor, floor_divide, log1p
from pyengine.ops.math import maximum, minimum, remainder, round, sign, sin, trunc  # noqa: A004
from pyengine.ops.shape import squeeze, unsqueeze
from pyengine.ops.stats import all, any, argmax, argmin, min, norm, prod, std, var  # noqa: A004
from pyengine.tensor import float16, half
from pyengine.tensor import (
    Tensor,
    bool_,
    double,
    float32,
    float64,
    int32,
    int64,
    long,
    uint8,
)
from pyengine.tensor import float as float  # noqa: A004,PLC0414

__version__ = "0.1.0"


def manual_seed(seed: int) -> None:
    """Seed the generator behind randn/rand, parameter init, dropout and data sampling."""
    random.manual_seed(seed)


def set_num_threads(n: int) -> None:
    """Number of OpenMP threads the CPU kernels use (default: OMP_NUM_THREADS or all cores)."""
    from pyengine.backend.device import _cpu

    _cpu.set_num_threads(int(n))


def get_num_threads() -> int:
    from pyengine.backend.device import _cpu

    return _cpu.get_num_threads()


__all__ = [
    "Tensor",
    "abs",
    "arange",
    "autograd",
    "bool_",
    "cat",
    "cuda",
    "device",
    "double",
    "empty",
    "enable_grad",
    "exp",
    "flatten",
    "float",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "get_num_threads",
    "int32",
    "int64",
    "is_grad_enabled",
    "load",
    "log",
    "log_softmax",
    "long",
    "manual_seed",
    "matmul",
    "max",
    "mean",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "permute",
    "rand",
    "randint",
    "randn",
    "randn_like",
    "relu",
    "reshape",
    "save",
    "set_grad_enabled",
    "set_num_threads",
    "sigmoid",
    "softmax",
    "sqrt",
    "stack",
    "sum",
    "tanh",
    "tensor",
    "transpose",
    "uint8",
    "zeros",
    "zeros_like",
]
__all__ += ["backends"]
__all__ += [
    "all",
    "any",
    "argmax",
    "argmin",
    "ceil",
    "chunk",
    "clamp",
    "clip",
    "cos",
    "cumsum",
    "empty_like",
    "expm1",
    "eye",
    "flip",
    "float16",
    "floor",
    "floor_divide",
    "full_like",
    "half",
    "linspace",
    "log1p",
    "masked_fill",
    "maximum",
    "min",
    "minimum",
    "norm",
    "prod",
    "rand_like",
    "randint_like",
    "remainder",
    "roll",
    "round",
    "sign",
    "sin",
    "sort",
    "split",
    "squeeze",
    "std",
    "topk",
    "trunc",
    "unbind",
    "unsqueeze",
    "var",
    "where",
]


def __getattr__(name: str):
    # pyengine.utils (utils.data imports the image datasets) loads on first use, keeping
    # `import pyengine` light.
    if name == "utils":
        import importlib

        return importlib.import_module("pyengine.utils")
    raise AttributeError(f"module 'pyengine' has no attribute {name!r}")


from pyengine.backends import (  # noqa: E402
    are_deterministic_algorithms_enabled,
    use_deterministic_algorithms,
)

__all__ += ["are_deterministic_algorithms_enabled", "use_deterministic_algorithms"]
