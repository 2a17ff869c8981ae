"""Reverse-mode autograd over a dynamic graph.

Every differentiable op is a ``Function`` subclass whose ``forward`` and ``backward`` work on raw
device arrays (NumPy arrays on the CPU) through ``self.k``, the kernels of the inputs' device and
dtype. ``apply`` wraps the result in a Tensor and records the node only when grad mode is on and
some input requires a gradient, so nothing is saved under ``no_grad``. ``backward`` walks the graph
in reverse topological order, accumulates gradients of reused tensors, and releases every node's
saved arrays and inputs as soon as its backward has run (unless ``retain_graph``), so a training
loop that still holds last step's ``loss`` does not keep that step's activations alive.

In-place changes are tracked per storage (``bump_version``): a node remembers the version of every
array it saved, and its backward refuses to run if one changed since, as PyTorch's version counter
does. With ``create_graph=True`` the backward pass runs each node's ``backward_graph`` (the same
formula written with differentiable Tensor ops), so gradients can be differentiated again.
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


class _ThreadFlag(threading.local):
    """A per-thread flag that every thread sees first at its default: reading an unset attribute
    of a plain threading.local through getattr(..., default) raises and catches an
    AttributeError, ~0.7 us on each op's Function.apply."""

    def __init__(self, default: bool) -> None:
        self.enabled = default


_mode = _ThreadFlag(True)


def is_grad_enabled() -> bool:
    return _mode.enabled


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


_anomaly = _ThreadFlag(False)


@contextlib.contextmanager
def detect_anomaly(enabled: bool = True):
    """Raise as soon as an op's forward or backward produces NaN or inf, naming the op."""
    prev = _anomaly.enabled
    _anomaly.enabled = enabled
    try:
        yield
    finally:
        _anomaly.enabled = prev


def _check_finite(name: str, where: str, arrays: Sequence[Any], be: Any) -> None:
    for a in arrays:
        if a is not None and not np.all(np.isfinite(be.to_numpy(a))):
            raise RuntimeError(f"{name}.{where} produced NaN or inf (anomaly detection is on)")


# id(storage array) -> [version, name of the last in-place op]. A storage that was never modified in
# place has no entry (version 0); an entry goes away with its array (weakref.finalize).
_versions: dict[int, list[Any]] = {}


def _storage(a: Any) -> Any:
    """The array that owns ``a``'s memory: views (reshape, detach, .data) share its version.
    Other device arrays are keyed by the object itself (their views are not traced)."""
    if type(a) is np.ndarray:
        base = a.base
        while type(base) is np.ndarray:
            a, base = base, base.base
    return a


def version_of(a: Any) -> int:
    e = _versions.get(id(_storage(a)))
    return 0 if e is None else e[0]


def bump_version(a: Any, op: str) -> None:
    """Record an in-place change of the storage behind array ``a`` by ``op``."""
    r = _storage(a)
    key = id(r)
    e = _versions.get(key)
    if e is None:
        e = _versions[key] = [0, op]
        with contextlib.suppress(TypeError):  # an array type without weakrefs keeps its entry
            weakref.finalize(r, _versions.pop, key, None)
    e[0] += 1
    e[1] = op


def node_name(ctx: Any) -> str:
    """PyTorch-style node name: ``ExpBackward`` for the Unary node of exp, ``MulBackward``..."""
    op = getattr(ctx, "op", None)
    base = "".join(w.capitalize() for w in op.split("_")) if isinstance(op, str) else None
    return f"{base or type(ctx).__name__}Backward"


def _check_versions(ctx: Any) -> None:
    for i, (a, v) in enumerate(zip(ctx.saved, ctx.saved_versions)):
        if a is None:
            continue
        e = _versions.get(id(_storage(a)))
        if e is not None and e[0] != v:
            shape = tuple(getattr(a, "shape", ()))
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{getattr(a, 'dtype', '?')} tensor of shape {shape}], which "
                f"is saved tensor {i} of {node_name(ctx)}, is at version {e[0]} (last changed by "
                f"{e[1]}); expected version {v} instead. Hint: the in-place change happened "
                "after the forward pass used this tensor; make it out of place (y = y + 1) or "
                "clone() the tensor first"
            )


class RemovableHandle:
    """What ``register_hook`` returns: ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list[Any], hook: Any) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            self._hooks.remove(self._hook)


class Function:
    """Base class of differentiable ops.

    Subclasses implement ``forward(self, *arrays, **params)`` returning an array (or a tuple whose
    first element is the differentiable output) and ``backward(self, grad)`` returning one gradient
    array (or None) per positional input. ``self.needs_input_grad[i]`` says whether input i needs
    one; ``self.k`` are the kernels and ``self.be`` the backend of the inputs' device.
    """

    __slots__ = (
        "k",
        "be",
        "device",
        "dtype",
        "needs_input_grad",
        "inputs",
        "saved",
        "saved_versions",
        "__dict__",
    )

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
                elif t.device is not ref.device and t.device != ref.device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, got "
                        f"{ref.device} and {t.device}"
                    )
                elif t.dtype != ref.dtype and t.dtype.kind == "f":
                    raise TypeError(
                        f"{cls.__name__}: expected all floating tensors of one dtype, got "
                        f"{ref.dtype} and {t.dtype}"
                    )
                needs.append(t._requires_grad)
                raw.append(t._data)
            else:
                needs.append(False)
                raw.append(t)
        if ref is None:
            raise TypeError(f"{cls.__name__} needs at least one Tensor input")
        ctx = cls.__new__(cls)
        device = ctx.device = ref.device
        ctx.dtype = ref._data.dtype
        ctx.be = backend(device)
        ctx.k = ctx.be.kernels(ctx.dtype)
        ctx.saved = ctx.saved_versions = ()
        track = any(needs) and is_grad_enabled()
        ctx.needs_input_grad = tuple(needs) if track else (False,) * len(inputs)
        out = ctx.forward(*raw, **params)
        if _anomaly.enabled:
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
            if ctx.saved:
                ctx.saved_versions = tuple(0 if a is None else version_of(a) for a in ctx.saved)
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


def _toposort(roots: Sequence[Any]) -> list[Any]:
    order: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(r, False) for r in reversed(roots)]
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
        if ctx is not None and ctx.inputs is not None:
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


def _initial_grad(root: Any, grad: Any, as_tensor: bool) -> Any:
    Tensor = _tensor_class()
    be = backend(root.device)
    if grad is None:
        if root.numel() != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; backward() on a tensor "
                f"of shape {tuple(root.shape)} needs an explicit gradient argument"
            )
        g = Tensor._wrap(be.full(root.shape, 1.0, root.dtype), root.device)
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
    return g if as_tensor else g._data


def _run_hooks(t: Any, g: Any, as_tensor: bool) -> Any:
    Tensor = _tensor_class()
    gt = g if as_tensor else Tensor._wrap(g, t.device)
    for hook in list(t._hooks):
        r = hook(gt)
        if r is not None:
            if not isinstance(r, Tensor) or tuple(r.shape) != tuple(gt.shape):
                raise RuntimeError(
                    f"hook {hook!r} returned {type(r).__name__} of a different shape than the "
                    f"gradient {tuple(gt.shape)}"
                )
            gt = r
    return gt if as_tensor else gt._data


def _node_backward(ctx: Any, g: Any, create_graph: bool) -> tuple[Any, ...]:
    if not create_graph:
        gin = ctx.backward(g)
        return gin if isinstance(gin, tuple) else (gin,)
    fn = getattr(ctx, "backward_graph", None)
    if fn is None:
        raise RuntimeError(
            f"{node_name(ctx)} does not support double backward: create_graph=True needs "
            "backward_graph (its gradient written with differentiable ops)"
        )
    with enable_grad():
        gin = fn(g)
    return gin if isinstance(gin, tuple) else (gin,)


def _engine(
    roots: Sequence[Any],
    root_grads: Sequence[Any],
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Any] | None,
    accumulate: bool,
) -> list[Any]:
    """One reverse pass from ``roots``. With ``inputs``, only their gradients are produced
    (accumulated into ``.grad`` when ``accumulate``, else returned); otherwise every leaf that
    requires grad accumulates. Gradients are raw arrays, or Tensors when ``create_graph``."""
    grads: dict[int, Any] = {}
    for r, g in zip(roots, root_grads):
        if not r.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
            )
        g0 = _initial_grad(r, g, create_graph)
        prev = grads.get(id(r))
        grads[id(r)] = g0 if prev is None else _sum(prev, g0, create_graph, r)
    targets = None if inputs is None else {id(t): i for i, t in enumerate(inputs)}
    captured: list[Any] = [None] * (0 if inputs is None else len(inputs))
    anomaly = _anomaly.enabled
    for t in reversed(_toposort(roots)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        if t._hooks:
            g = _run_hooks(t, g, create_graph)
        ctx = t._ctx
        if targets is not None and id(t) in targets:
            if accumulate:
                _accumulate_leaf(t, g, may_take=ctx is None, as_tensor=create_graph)
            else:
                captured[targets[id(t)]] = g
        elif ctx is None:
            if targets is None and t.requires_grad:
                _accumulate_leaf(t, g, as_tensor=create_graph)
            continue
        elif t._retains_grad and accumulate:
            _accumulate_leaf(t, g, may_take=False, as_tensor=create_graph)  # g goes on below
        if ctx is None:
            continue
        if ctx.inputs is None or ctx.saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed); pass retain_graph=True to the "
                "first backward call"
            )
        if ctx.saved_versions:
            _check_versions(ctx)
        gin = _node_backward(ctx, g, create_graph)
        if anomaly:
            raw = [x._data if create_graph and x is not None else x for x in gin]
            _check_finite(node_name(ctx), "backward", raw, ctx.be)
        for inp, gi, need in zip(ctx.inputs, gin, ctx.needs_input_grad):
            if gi is None or not need:
                continue
            prev = grads.get(id(inp))
            grads[id(inp)] = gi if prev is None else _sum(prev, gi, create_graph, ctx)
        # Only `grads` may keep the gradients now, so that a leaf can take its own without a
        # copy (_accumulate_leaf counts references).
        gin = gi = prev = None
        if not retain_graph:
            ctx.saved = None
            ctx.inputs = None
    return captured


def _sum(prev: Any, g: Any, as_tensor: bool, where: Any) -> Any:
    if as_tensor:
        return prev + g
    # Backward results may alias each other (Add returns its gradient twice), so a reused
    # tensor's gradient is summed into a fresh array, never in place.
    be = backend(where.device)
    acc = be.empty(prev.shape, prev.dtype)
    be.kernels(prev.dtype).binary_forward("add", prev, g, acc)
    return acc


def _as_list(x: Any) -> list[Any]:
    Tensor = _tensor_class()
    return [x] if isinstance(x, Tensor) else list(x)


def backward(
    root: Any,
    grad: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Any = None,
) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient
    (only into ``inputs`` when given). ``create_graph`` records the backward pass itself, so the
    gradients can be differentiated again; it implies ``retain_graph``."""
    if retain_graph is None:
        retain_graph = create_graph
    _engine(
        [root],
        [grad],
        retain_graph,
        create_graph,
        None if inputs is None else _as_list(inputs),
        accumulate=True,
    )


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Any, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``, returned (not accumulated into
    ``.grad``), as ``torch.autograd.grad``. ``grad_outputs`` weights each output (default: ones
    for scalar outputs)."""
    outs, ins = _as_list(outputs), _as_list(inputs)
    gouts = [None] * len(outs) if grad_outputs is None else _as_list(grad_outputs)
    if len(gouts) != len(outs):
        raise RuntimeError(
            f"grad_outputs has {len(gouts)} tensors but there are {len(outs)} outputs"
        )
    for t in ins:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    res = _engine(outs, gouts, retain_graph, create_graph, ins, accumulate=False)
    Tensor = _tensor_class()
    out = []
    for t, g in zip(ins, res):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    "One of the differentiated Tensors appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior."
                )
            out.append(None)
        else:
            out.append(g if isinstance(g, Tensor) else Tensor._wrap(g, t.device))
    return tuple(out)


def _accumulate_leaf(t: Any, g: Any, may_take: bool = True, as_tensor: bool = False) -> None:
    Tensor = _tensor_class()
    if as_tensor:
        t.grad = g if t.grad is None else t.grad + g
        return
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
        k.axpby(g, t.grad._data, 1.0, 1.0)
    for hook in list(_post_accumulate_grad_hooks.get(id(t), ())):
        hook(t)


# id(leaf) -> its hooks; an entry goes when its tensor is collected (Tensor has __slots__ and no
# hash, so the registry is keyed by id and cleaned by weakref.finalize).
_post_accumulate_grad_hooks: dict[int, list[Callable[[Any], None]]] = {}


def register_post_accumulate_grad_hook(t: Any, hook: Callable[[Any], None]) -> RemovableHandle:
    """Call ``hook(t)`` each time a backward has finished accumulating into leaf ``t``'s
    ``.grad`` (PyTorch's ``Tensor.register_post_accumulate_grad_hook``)."""
    if not t.requires_grad or t._ctx is not None:
        raise RuntimeError(
            "post accumulate grad hooks can only be registered on leaf tensors that require grad"
        )
    key = id(t)
    if key not in _post_accumulate_grad_hooks:
        _post_accumulate_grad_hooks[key] = []
        weakref.finalize(t, _post_accumulate_grad_hooks.pop, key, None)
    _post_accumulate_grad_hooks[key].append(hook)
    return RemovableHandle(_post_accumulate_grad_hooks[key], hook)


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
        flat = x._data.reshape(-1)
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
    "grad",
    "is_grad_enabled",
    "no_grad",
    "set_grad_enabled",
]
