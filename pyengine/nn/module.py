"""``Module`` and ``Parameter``: PyTorch's module protocol (registration by attribute assignment,
``parameters()``, ``named_parameters()``, buffers, ``train()/eval()``, ``state_dict()``)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from pyengine.autograd import no_grad
from pyengine.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a learnable parameter."""

    __slots__ = ()

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        src = data if data is not None else Tensor(np.empty((0,), np.float32))
        self._data = src._data
        self.device = src.device
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self._hooks = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call super().__init__() before assigning attributes to a Module")
        if isinstance(value, (Parameter, Module)):
            target = self._parameters if isinstance(value, Parameter) else self._modules
            for d in (self._parameters, self._buffers, self._modules):
                if d is not target:
                    d.pop(name, None)
            self.__dict__.pop(name, None)
            target[name] = value  # a re-assigned name keeps its place, as in torch
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer '{name}'")
            self._buffers[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as '{name}' (a Parameter or Module "
                    "is expected)"
                )
            (self._parameters if name in self._parameters else self._modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters[name] = None
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        self._buffers[name] = tensor
        self.__dict__.pop(name, None)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for n, m in self._modules.items():
            if m is not None:
                yield n, m

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mp}.{n}" if mp else n), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for mp, m in self.named_modules(prefix):
            for n, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{n}" if mp else n), b

    def buffers(self) -> Iterator[Tensor]:
        for _, b in self.named_buffers():
            yield b

    # ------------------------------------------------------------------ modes and calls
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            p.grad = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def apply(self, fn: Any) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    moved = p.detach().to(*args, **kwargs)
                    p._data, p.device = moved._data, moved.device
            for n, b in m._buffers.items():
                if b is not None:
                    m._buffers[n] = b.to(*args, **kwargs)
        return self

    def cuda(self) -> Module:
        return self.to("cuda")

    def cpu(self) -> Module:
        return self.to("cpu")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name, as in PyTorch."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for mp, m in self.named_modules():
            for n, p in m._parameters.items():
                if p is not None:
                    out[f"{mp}.{n}" if mp else n] = p.detach()
            for n, b in m._buffers.items():
                if b is not None and n not in m._non_persistent:
                    out[f"{mp}.{n}" if mp else n] = b.detach()
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        targets = {}
        for mp, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for n, t in store.items():
                    if t is not None:
                        targets[f"{mp}.{n}" if mp else n] = t
        for k, v in state_dict.items():
            if k not in targets:
                continue
            t = targets[k]
            arr = v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
            if tuple(arr.shape) != tuple(t.shape):
                raise RuntimeError(
                    f"size mismatch for {k}: copying a param with shape {tuple(arr.shape)}, the "
                    f"shape in the current model is {tuple(t.shape)}"
                )
            with no_grad():
                t.copy_(Tensor(arr.astype(t.dtype)).to(t.device))
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for n, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({n}): {sub}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


class _IncompatibleKeys:
    def __init__(self, missing: list[str], unexpected: list[str]) -> None:
        self.missing_keys, self.unexpected_keys = missing, unexpected

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
            f"unexpected_keys={self.unexpected_keys})"
        )
