"""Reverse-mode autograd over a dynamic graph.

Every differentiable op is a ``Function`` subclass whose ``forward`` and ``backward`` work on raw
device arrays (NumPy arrays on the CPU) through ``self.k``, the kernels of the inputs' device and
dtype. ``apply`` wraps the result in a Tensor and records the node only when grad mode is on and
some input requires a gradient, so nothing is saved under ``no_grad``. ``backward`` walks the graph
in reverse topological order, accumulates gradients of reused tensors, and frees every node's
saved arrays as soon as its backward has run.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pyengine.backend import Device, backend

_mode = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_mode, "enabled", True)


def set_grad_enabled(enabled: bool) -> None:
    _mode.enabled = bool(enabled)


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.prev = is_grad_enabled()
        set_grad_enabled(self.enabled)

    def __exit__(self, *exc: object) -> None:
        set_grad_enabled(self.prev)


def no_grad() -> _GradMode:
    """Context manager and decorator that disables graph recording."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


_anomaly = threading.local()


@contextlib.contextmanager
def detect_anomaly(enabled: bool = True):
    """Raise as soon as an op's forward or backward produces NaN or inf, naming the op."""
    prev = getattr(_anomaly, "enabled", False)
    _anomaly.enabled = enabled
    try:
        yield
    finally:
        _anomaly.enabled = prev


def _check_finite(name: str, where: str, arrays: Sequence[Any], be: Any) -> None:
    for a in arrays:
        if a is not None and not np.all(np.isfinite(be.to_numpy(a))):
            raise RuntimeError(f"{name}.{where} produced NaN or inf (anomaly detection is on)")


class Function:
    """Base class of differentiable ops.

    Subclasses implement ``forward(self, *arrays, **params)`` returning an array (or a tuple whose
    first element is the differentiable output) and ``backward(self, grad)`` returning one gradient
    array (or None) per positional input. ``self.needs_input_grad[i]`` says whether input i needs
    one; ``self.k`` are the kernels and ``self.be`` the backend of the inputs' device.
    """

    __slots__ = ("k", "be", "device", "dtype", "needs_input_grad", "inputs", "saved", "__dict__")

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    def forward(self, *args: Any, **params: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is not differentiable")

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        Tensor = _tensor_class()
        ref = None
        needs = []
        raw = []
        for t in inputs:
            if isinstance(t, Tensor):
                if ref is None:
                    ref = t
                elif t.device != ref.device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, got "
                        f"{ref.device} and {t.device}"
                    )
                elif t.dtype != ref.dtype and t.dtype.kind == "f":
                    raise TypeError(
                        f"{cls.__name__}: expected all floating tensors of one dtype, got "
                        f"{ref.dtype} and {t.dtype}"
                    )
                needs.append(t.requires_grad)
                raw.append(t.data)
            else:
                needs.append(False)
                raw.append(t)
        if ref is None:
            raise TypeError(f"{cls.__name__} needs at least one Tensor input")
        ctx = cls.__new__(cls)
        device = ctx.device = ref.device
        ctx.dtype = ref.data.dtype
        ctx.be = backend(device)
        ctx.k = ctx.be.kernels(ctx.dtype)
        ctx.saved = ()
        track = any(needs) and is_grad_enabled()
        ctx.needs_input_grad = tuple(needs) if track else (False,) * len(inputs)
        out = ctx.forward(*raw, **params)
        if getattr(_anomaly, "enabled", False):
            _check_finite(
                cls.__name__, "forward", out if isinstance(out, tuple) else (out,), ctx.be
            )
        if isinstance(out, tuple):
            first = Tensor._wrap(out[0], device, requires_grad=track)
            rest = tuple(Tensor._wrap(o, device) for o in out[1:])
            result: Any = (first, *rest)
        else:
            first = result = Tensor._wrap(out, device, requires_grad=track)
        if track:
            ctx.inputs = inputs
            first._ctx = ctx
        return result


_Tensor: Any = None


def _tensor_class() -> Any:
    """pyengine.tensor.Tensor, imported on first use (tensor.py imports this module)."""
    global _Tensor
    if _Tensor is None:
        from pyengine.tensor import Tensor

        _Tensor = Tensor
    return _Tensor


def _toposort(root: Any) -> list[Any]:
    order: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        ctx = t._ctx
        if ctx is not None:
            # Leaf inputs go on the stack first so that they come off last: each then follows
            # its last consumer in the backward order instead of waiting for the end of the
            # pass, and its gradient is final (post-accumulate hooks fire, DDP starts sending
            # it) while the rest of backward runs. Reversed, so a layer's bias comes before its
            # weight: reverse registration order, DDP's bucket order.
            inputs = [i for i in ctx.inputs if i is not None and hasattr(i, "_ctx")]
            leaves = [i for i in inputs if i._ctx is None]
            for inp in leaves[::-1] + [i for i in inputs if i._ctx is not None]:
                if id(inp) not in seen:
                    stack.append((inp, False))
    return order


def backward(root: Any, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient."""
    from pyengine.tensor import Tensor

    if not root.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    be = backend(root.device)
    if grad is None:
        if root.numel() != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; backward() on a tensor "
                f"of shape {tuple(root.shape)} needs an explicit gradient argument"
            )
        g0 = be.full(root.shape, 1.0, root.dtype)
    else:
        g = (
            grad
            if isinstance(grad, Tensor)
            else Tensor._wrap(be.from_numpy(np.asarray(grad, dtype=root.dtype)), root.device)
        )
        if tuple(g.shape) != tuple(root.shape):
            raise RuntimeError(
                f"gradient has shape {tuple(g.shape)} but the tensor has shape {tuple(root.shape)}"
            )
        g0 = g.data
    grads: dict[int, Any] = {id(root): g0}
    anomaly = getattr(_anomaly, "enabled", False)
    for t in reversed(_toposort(root)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        ctx = t._ctx
        if ctx is None:
            if t.requires_grad:
                _accumulate_leaf(t, g)
            continue
        if t._retains_grad:
            _accumulate_leaf(t, g, may_take=False)  # g goes on into this node's backward
        if ctx.saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time; pass retain_graph=True to "
                "the first backward call"
            )
        gin = ctx.backward(g)
        if not isinstance(gin, tuple):
            gin = (gin,)
        if anomaly:
            _check_finite(type(ctx).__name__, "backward", gin, ctx.be)
        for inp, gi, need in zip(ctx.inputs, gin, ctx.needs_input_grad):
            if gi is None or not need:
                continue
            prev = grads.get(id(inp))
            if prev is None:
                grads[id(inp)] = gi
            else:
                # Backward results may alias each other (Add returns its gradient twice), so a
                # reused tensor's gradient is summed into a fresh array, never in place.
                acc = ctx.be.empty(prev.shape, prev.dtype)
                ctx.be.kernels(prev.dtype).binary_forward("add", prev, gi, acc)
                grads[id(inp)] = acc
        # Only `grads` may keep the gradients now, so that a leaf can take its own without a
        # copy (_accumulate_leaf counts references).
        gin = gi = prev = None
        if not retain_graph:
            ctx.saved = None


def _accumulate_leaf(t: Any, g: Any, may_take: bool = True) -> None:
    Tensor = _tensor_class()
    if t.grad is None:
        # A gradient array that owns its memory and that nothing but this call refers to (the
        # caller's variable, the parameter, getrefcount's argument) is fresh from a backward
        # and can become .grad as is; anything else (a view, an array also held by the graph,
        # the user's gradient) is copied so that .grad never aliases it.
        if may_take and isinstance(g, np.ndarray) and g.base is None and sys.getrefcount(g) <= 3:
            t.grad = Tensor._wrap(g, t.device)
        else:
            t.grad = Tensor._wrap(backend(t.device).copy(g), t.device)
    else:
        k = backend(t.device).kernels(t.grad.dtype)
        k.axpby(g, t.grad.data, 1.0, 1.0)
    for hook in list(_post_accumulate_grad_hooks.get(id(t), {}).values()):
        hook(t)


# id(leaf) -> {handle id: hook}; an entry goes when its tensor is collected (Tensor has
# __slots__ and no hash, so the registry is keyed by id and cleaned by weakref.finalize).
_post_accumulate_grad_hooks: dict[int, dict[int, Callable[[Any], None]]] = {}


class RemovableHandle:
    def __init__(self, hooks: dict[int, Any]) -> None:
        self.hooks, self.id = hooks, id(self)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)


def register_post_accumulate_grad_hook(t: Any, hook: Callable[[Any], None]) -> RemovableHandle:
    """Call ``hook(t)`` each time a backward has finished accumulating into leaf ``t``'s
    ``.grad`` (PyTorch's ``Tensor.register_post_accumulate_grad_hook``)."""
    if not t.requires_grad or t._ctx is not None:
        raise RuntimeError(
            "post accumulate grad hooks can only be registered on leaf tensors that require grad"
        )
    key = id(t)
    if key not in _post_accumulate_grad_hooks:
        _post_accumulate_grad_hooks[key] = {}
        weakref.finalize(t, _post_accumulate_grad_hooks.pop, key, None)
    handle = RemovableHandle(_post_accumulate_grad_hooks[key])
    handle.hooks[handle.id] = hook
    return handle


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Compare the analytic gradient of ``fn`` with central finite differences, in float64.

    ``inputs`` are Tensors (converted to float64 copies; those with ``requires_grad`` are checked)
    or other arguments passed through. ``fn`` may return a tensor of any shape: the check uses
    ``sum(fn(*inputs) * w)`` with a fixed random ``w``, so every output element contributes.
    """
    from pyengine.tensor import Tensor

    xs = [
        Tensor(np.array(t.detach().numpy(), dtype=np.float64), requires_grad=t.requires_grad)
        if isinstance(t, Tensor)
        else t
        for t in inputs
    ]
    out = fn(*xs)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(out.shape)

    def scalar(args: Sequence[Any]) -> float:
        with no_grad():
            return float((fn(*args).numpy() * w).sum())

    (out * Tensor(w)).sum().backward()
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            continue
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy().copy()
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)
        nflat = numeric.reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            fp = scalar(xs)
            flat[j] = orig - eps
            fm = scalar(xs)
            flat[j] = orig
            nflat[j] = (fp - fm) / (2 * eps)
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            if not raise_exception:
                return False
            j = int(np.flatnonzero(bad)[0])
            raise AssertionError(
                f"gradcheck: input {i} (shape {tuple(x.shape)}) gradient mismatch at flat index "
                f"{j}: analytic {analytic.reshape(-1)[j]:.8g} vs numeric "
                f"{numeric.reshape(-1)[j]:.8g}"
                f" ({int(bad.sum())} of {bad.size} elements differ)"
            )
    return True


__all__ = [
    "Device",
    "Function",
    "backward",
    "detect_anomaly",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "no_grad",
    "set_grad_enabled",
]
