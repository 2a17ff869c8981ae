"""``save``/``load`` of state dicts as plain ``.npz`` files.

Format (readable without pyengine: ``np.load(path)``): one array per state-dict key, stored
under the key itself; Python scalars are stored as 0-d arrays and come back as Python numbers.
Nested dicts (an optimiser state, a checkpoint with "model" and "optim") are flattened with
"/"-separated keys. Writes go to a temporary file in the same directory and are renamed into
place, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

from pyengine.tensor import Tensor

_META = "__pyengine_meta__"


def _flatten(obj: Any, prefix: str, arrays: dict[str, np.ndarray], kinds: dict[str, str]) -> None:
    if isinstance(obj, dict):
        if not obj:
            kinds[prefix] = "emptydict"
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__}")
            if isinstance(k, str) and "/" in k:
                raise ValueError(f"save: key {k!r} contains '/', which the format reserves")
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(k, int):
                kinds[key + "#int"] = "intkey"
            _flatten(v, key, arrays, kinds)
    elif isinstance(obj, Tensor):
        arrays[prefix] = np.asarray(obj.detach().cpu().numpy(), order="C")
        kinds[prefix] = "tensor"
    elif isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        kinds[prefix] = "ndarray"
    elif isinstance(obj, (bool, int, float, np.number)):
        arrays[prefix] = np.asarray(obj)
        kinds[prefix] = type(obj).__name__ if isinstance(obj, (bool, int, float)) else "ndarray"
    elif isinstance(obj, str):
        arrays[prefix] = np.asarray(obj)
        kinds[prefix] = "str"
    elif isinstance(obj, (list, tuple)):
        kinds[prefix] = "json"
        arrays[prefix] = np.asarray(json.dumps(obj))
    elif obj is None:
        kinds[prefix] = "none"
    else:
        raise TypeError(f"save: cannot store a value of type {type(obj).__name__} at '{prefix}'")


def mkstemp_umask(directory: str | os.PathLike, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` for an atomic write (temp file + ``os.replace``) whose result gets the
    mode a plain ``open`` would give it (0666 less the umask) rather than mkstemp's 0600."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a (nested) dict of tensors, arrays and numbers atomically to ``path``."""
    if not isinstance(obj, dict):
        raise TypeError(f"save expects a dict (e.g. model.state_dict()), got {type(obj).__name__}")
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    _flatten(obj, "", arrays, kinds)
    arrays[_META] = np.asarray(json.dumps({"format": "pyengine-npz-1", "kinds": kinds}))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = mkstemp_umask(directory, ".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike, map_location: Any = None) -> Any:
    """Read what ``save`` wrote; tensors come back as CPU tensors (or on ``map_location``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at '{path}'")
    try:
        z = np.load(path, allow_pickle=False)
        files = set(z.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"'{path}' is not a readable pyengine checkpoint (.npz): {e}") from None
    if _META not in files:
        raise ValueError(f"'{path}' is an .npz file but not a pyengine checkpoint (no metadata)")
    try:
        meta = json.loads(str(z[_META]))
        kinds = meta["kinds"] if isinstance(meta, dict) else None
        if not isinstance(kinds, dict):
            raise ValueError("metadata is not a {'kinds': {...}} object")
        out: dict[str, Any] = OrderedDict()
        for key, kind in kinds.items():
            if kind == "intkey":
                continue
            if kind == "emptydict":
                value: Any = OrderedDict()
            elif kind == "none":
                value = None
            elif kind == "tensor":
                value = Tensor(z[key])
                if map_location is not None:
                    value = value.to(map_location)
            elif kind == "ndarray":
                value = z[key]
            elif kind == "json":
                value = json.loads(str(z[key]))
            elif kind == "str":
                value = str(z[key])
            else:
                value = {"bool": bool, "int": int, "float": float}[kind](z[key].item())
            _insert(out, key, value, kinds)
    # MemoryError: an array header claiming more elements than the file holds (2**60).
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        MemoryError,
        OSError,
        EOFError,
    ) as e:
        raise ValueError(f"'{path}' is a damaged or truncated checkpoint: {e!r}") from None
    return out


def _insert(root: dict[str, Any], key: str, value: Any, kinds: dict[str, str]) -> None:
    if not key:
        return
    parts = key.split("/")
    d = root
    for i, p in enumerate(parts[:-1]):
        k: Any = int(p) if kinds.get("/".join(parts[: i + 1]) + "#int") else p
        d = d.setdefault(k, OrderedDict())
    last: Any = int(parts[-1]) if kinds.get(key + "#int") else parts[-1]
    d[last] = value
