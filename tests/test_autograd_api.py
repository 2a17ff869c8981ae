"""autograd.grad, double backward (create_graph), hooks, requires_grad_, and the release of the
graph after backward (issue 12: a held ``loss`` must not keep the step's activations alive)."""

import gc
import weakref

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F


def _both(torch, fn, *arrays):
    """Run fn(lib, *tensors) in pyengine (float64) and torch (float64); return both results."""
    out = []
    for lib in (pe, torch):
        ts = [lib.tensor(a, dtype=lib.float64, requires_grad=True) for a in arrays]
        out.append(fn(lib, *ts))
    return out


def _np(v):
    return np.asarray(v.detach().numpy() if hasattr(v, "detach") else v)


# Gradient-penalty style: the gradient's norm is differentiated again.
DOUBLE = {
    "elementwise": lambda lib, x, w: ((x * w).exp() / (x * x + 1) - x.sqrt()).sum(),
    "tanh_sigmoid_log": lambda lib, x, w: (x.tanh() * w.sigmoid() + (x + 2).log()).sum(),
    "relu_leaky_abs": lambda lib, x, w: ((x * w).relu() * x + (x - w).abs() * x).sum(),
    "matmul_mean": lambda lib, x, w: ((x.reshape(2, 3) @ w.reshape(3, 2)) ** 3).mean(),
    "linear": lambda lib, x, w: (
        lib.nn.functional.linear(x.reshape(3, 2), w.reshape(3, 2)).tanh() ** 2
    ).sum(),
    "layout": lambda lib, x, w: (
        ((x.reshape(2, 3).permute(1, 0)[1:] * w.reshape(3, 2)[:2]).sum(0) ** 2).sum()
        + (lib.cat([x, w]) ** 3).sum()
    ),
    "sin_cos_clamp": lambda lib, x, w: (x.sin() * w.cos() + (x * w).clamp(0.1, 0.9) ** 2).sum(),
    "where_max": lambda lib, x, w: (lib.where(x > w, x * x, w * x) + lib.maximum(x, w) ** 2).sum(),
    "index_family": lambda lib, x, w: (
        ((x.flip(0).roll(1, 0).cumsum(0) * w.repeat(2)[3:9]) ** 2).sum()
        + (x.masked_fill(x > 1.0, 0.5) * w.var()).sum()
        + (x.reshape(2, 3).unbind(0)[1] * w.split(3)[0]).norm()
    ),
    "softmax_ce_max": lambda lib, x, w: (
        lib.nn.functional.cross_entropy(x.reshape(2, 3) * w.reshape(2, 3), lib.tensor([2, 0]))
        + (x.reshape(3, 2).softmax(1) * w.reshape(3, 2)).sum()
        + (x * w).reshape(2, 3).max(1).values.sum() ** 2
    ),
    "pow_rem_sort": lambda lib, x, w: (
        (x ** (w + 1.5)).sum()
        + ((x % (w.abs() + 0.5)) ** 2).sum()
        + (x * w).sort().values[1:].pow(2).sum()
        + (x.topk(3).values * w[:3]).sum() ** 2
    ),
}


@pytest.mark.parametrize("name", list(DOUBLE))
def test_double_backward_matches_torch(torch, rng, name):
    x0 = rng.uniform(0.2, 1.5, 6)
    w0 = rng.uniform(-1.0, 1.0, 6)

    def penalty(lib, x, w):
        y = DOUBLE[name](lib, x, w)
        gx, gw = lib.autograd.grad(y, [x, w], create_graph=True)
        pen = (gx * gx).sum() + (gw * gw * gw).sum()
        pen.backward()
        return _np(pen), _np(x.grad), _np(w.grad)

    got, ref = _both(torch, penalty, x0, w0)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)


def test_grad_returns_without_accumulating():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    (g,) = pe.autograd.grad(y, x)
    assert g.tolist() == [2.0, 4.0] and x.grad is None and not g.requires_grad


def test_grad_outputs_and_intermediate_inputs():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    y = h * h
    gh, gx = pe.autograd.grad(y, [h, x], grad_outputs=pe.tensor([1.0, 10.0]))
    assert gh.tolist() == [6.0, 120.0] and gx.tolist() == [18.0, 360.0]


def test_grad_unused_input():
    x = pe.tensor([1.0], requires_grad=True)
    z = pe.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used"):
        pe.autograd.grad((x * 2).sum(), [x, z])
    gx, gz = pe.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gx.tolist() == [2.0] and gz is None


def test_second_backward_raises_and_retain_graph_allows_it():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        pe.autograd.grad(y, x)


def test_create_graph_unsupported_op_names_it():
    # max_pool2d has no backward_graph yet (see docs/autograd.md)
    x = pe.randn(1, 1, 5, 5, requires_grad=True)
    y = F.max_pool2d(x, 2).sum()
    with pytest.raises(RuntimeError, match="double backward"):
        pe.autograd.grad(y, x, create_graph=True)


def test_backward_releases_saved_activations_while_loss_is_held():
    w = pe.randn(64, 64, requires_grad=True)
    x = pe.randn(32, 64)
    h = (x @ w).relu()  # relu saves its output h; sum/matmul keep h and x as inputs
    ref_tensor, ref_array = weakref.ref(h), weakref.ref(h._data)
    loss = (h * h).sum()
    del h
    gc.collect()
    assert ref_tensor() is not None  # the graph holds it before backward
    loss.backward()
    gc.collect()
    assert ref_tensor() is None and ref_array() is None
    assert loss.grad_fn is not None and w.grad is not None


def test_retain_graph_keeps_activations():
    w = pe.randn(8, 8, requires_grad=True)
    h = (pe.randn(4, 8) @ w).relu()
    ref = weakref.ref(h)
    loss = (h * h).sum()
    del h
    loss.backward(retain_graph=True)
    gc.collect()
    assert ref() is not None


def test_register_hook_sees_and_replaces_gradient():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = x * 3
    h.register_hook(lambda g: seen.append(g.tolist()))
    handle = x.register_hook(lambda g: g * 10)
    (h * h).sum().backward()
    assert seen == [[6.0, 12.0]] and x.grad.tolist() == [180.0, 360.0]
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="doesn't require"):
        pe.ones(2).register_hook(lambda g: g)


def test_requires_grad_setter_and_method():
    t = pe.zeros(2)
    assert t.requires_grad_() is t and t.requires_grad
    t.requires_grad = False
    assert not t.requires_grad
    with pytest.raises(RuntimeError, match="floating"):
        pe.tensor([1, 2]).requires_grad = True
    with pytest.raises(RuntimeError, match="floating"):
        pe.tensor([1, 2]).requires_grad_()


@pytest.mark.filterwarnings("ignore:Using backward")
def test_backward_inputs_and_create_graph(torch):
    res = []
    for lib in (pe, torch):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        w = lib.tensor([3.0, -1.0], dtype=lib.float64, requires_grad=True)
        y = (x * x * w).sum()
        y.backward(inputs=[x], create_graph=True)
        assert w.grad is None and x.grad.requires_grad
        (x.grad * x.grad).sum().backward(inputs=[w])
        res.append((x.grad.detach().tolist(), w.grad.tolist()))
    assert res[0] == res[1]
