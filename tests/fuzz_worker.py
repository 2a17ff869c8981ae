"""Child process of tests/test_fuzz.py: evaluates one generated call per stdin line and answers
one JSON line, so that a crash or a hang of the call kills only this process, which the test
notices (EOF, signal, time limit) and reports with the call that did it.

A call is a Python expression over ``pe``, ``F``, ``np``, ``_cpu`` and ``T(shape, fill=None,
dtype=None, order="C")``, which makes a tensor (or, with ``raw=True``, a NumPy array for the raw
bindings) of the current dtype. Answers: ``{"ok": true, "match": bool|null}`` or
``{"exc": "TypeError", "msg": "..."}``. For a call marked ``ref``, a float32 result is compared
with the same call in float64, which runs on the NumPy twins: the reference.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from pyengine import _cpu

_DTYPE = [np.float32]


def T(  # noqa: N802 - reads like a constructor in the generated calls
    shape: Any, fill: Any = None, dtype: Any = None, order: str = "C", raw: bool = False
) -> Any:
    dt = np.dtype(dtype) if dtype is not None else np.dtype(_DTYPE[0])
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if fill is None:
        data = np.random.default_rng(n).standard_normal(n)
    else:
        data = np.full(n, fill, dtype=np.float64)
    a = np.asarray(data.reshape(shape), dtype=dt, order=order)
    if order == "F":
        a = np.asfortranarray(a)
    return a if raw else pe.tensor(a, dtype=pe.float64 if dt == np.float64 else None)


def _values(r: Any) -> list[np.ndarray]:
    rs = r if isinstance(r, (tuple, list)) else [r]
    return [np.asarray(x.detach().numpy() if isinstance(x, pe.Tensor) else x) for x in rs]


def _match(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        if x.dtype.kind != "f":
            continue
        y = y.astype(np.float64)
        both = np.isfinite(x) & np.isfinite(y)
        scale = float(np.abs(y[both]).max()) if both.any() else 0.0
        if not np.allclose(x[both], y[both], rtol=1e-3, atol=1e-4 * (1.0 + scale)):
            return False
    return True


def _eval(expr: str) -> Any:
    env = {"pe": pe, "F": F, "np": np, "_cpu": _cpu, "T": T}
    return eval(expr, env)  # noqa: S307 - the test generates these expressions itself


def main() -> None:
    # A hostile size can ask for gigabytes that would really be touched; cap the address space
    # so such a call raises MemoryError (AddressSanitizer reserves terabytes of shadow memory
    # and caps allocations itself: .ci/sanitize.sh sets max_allocation_size_mb).
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        limit = int(os.environ.get("PYENGINE_FUZZ_MEMORY", str(3 << 30)))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        req = json.loads(line)
        _DTYPE[0] = np.float32
        try:
            r = _eval(req["call"])
            match = None
            if req.get("ref"):
                out32 = _values(r)
                _DTYPE[0] = np.float64
                try:
                    match = _match(out32, _values(_eval(req["call"])))
                except MemoryError:  # the twins materialise more; no reference then
                    match = None
                except Exception as e:  # float32 accepted what the reference rejects
                    match = f"reference raised {type(e).__name__}: {e}"[:300]
            ans: dict[str, Any] = {"ok": True, "match": match}
        except Exception as e:  # the test judges the type
            ans = {"exc": type(e).__name__, "msg": str(e)[:300]}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
