import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import Function, gradcheck


def test_linear_relu_against_twin(device, rng):
    x, w, b = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    check_op(lambda x, w, b: F.linear(x, w, b).relu(), [x, w, b], device=device)


def test_gradcheck_composite():
    a = pe.randn(3, 4, requires_grad=True)
    b = pe.rand(3, 4, requires_grad=True)
    assert gradcheck(lambda a, b: (a * b).exp().sum(1) / (b.sum() + 1), [a, b])


def test_gradcheck_detects_a_wrong_backward():
    class Bad(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return (g * 3,)

    x = pe.randn(3, requires_grad=True)
    assert not gradcheck(lambda x: Bad.apply(x), [x], raise_exception=False)
    with pytest.raises(AssertionError, match="mismatch"):
        gradcheck(lambda x: Bad.apply(x), [x])


def test_diamond_graph_topological_order():
    order = []

    class Tag(Function):
        def forward(self, x, name):
            self.name = name
            return x.copy()

        def backward(self, g):
            order.append(self.name)
            return (g,)

    x = pe.tensor([1.0, 2.0], requires_grad=True)
    a = Tag.apply(x, name="a")
    b = Tag.apply(a * 2, name="b")
    c = Tag.apply(a * 3, name="c")
    d = Tag.apply(b + c, name="d")
    d.sum().backward()
    assert order[0] == "d" and order[-1] == "a" and sorted(order[1:3]) == ["b", "c"]
    assert x.grad.tolist() == [5.0, 5.0]


@pytest.mark.parametrize(
    "fn,expected",
    [
        (lambda x: x * x, lambda v: 2 * v),
        (lambda x: x + x, lambda v: 2 + 0 * v),
        (lambda x: x + (x * 2).relu(), lambda v: 1 + 2 * (v > 0)),  # residual
        (lambda x: (x * x) * x, lambda v: 3 * v * v),
        (lambda x: (x - x) * x, lambda v: 0 * v),
    ],
)
def test_reused_tensor_gradients_accumulate(fn, expected):
    v = np.array([-1.5, 0.5, 2.0])
    x = pe.tensor(v, requires_grad=True)
    fn(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), expected(v))


def test_grad_accumulates_across_backward_calls():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_leaf_grad_does_not_alias_upstream():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = x + 0
    g = pe.tensor([1.0, 1.0])
    y.backward(g)
    y2 = x + 0
    y2.backward(g)
    assert g.tolist() == [1.0, 1.0] and x.grad.tolist() == [2.0, 2.0]


def test_saved_buffers_freed_after_backward():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    assert y.grad_fn.saved is None
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_no_grad_records_nothing():
    x = pe.tensor([1.0], requires_grad=True)
    with pe.no_grad():
        y = x * 2
        assert not pe.is_grad_enabled()
    assert pe.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None

    @pe.no_grad()
    def f(t):
        return t.exp()

    z = f(x)
    assert not z.requires_grad and z.grad_fn is None
    with pe.no_grad():
        with pe.enable_grad():
            assert (x * 2).requires_grad


def test_nothing_saved_without_requires_grad():
    x = pe.randn(3)
    y = x.exp()
    assert y.grad_fn is None and not y.requires_grad


def test_detach_and_requires_grad_propagation():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    c = pe.tensor([3.0, 4.0])
    assert (x * c).requires_grad and not (c * c).requires_grad
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    (d * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="floating"):
        pe.tensor([1, 2]).requires_grad_()


def test_retain_grad_on_intermediate():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [6.0, 12.0] and x.grad.tolist() == [18.0, 36.0]


def test_backward_on_non_scalar_needs_gradient():
    x = pe.randn(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        y.backward()
    y.backward(pe.ones(2, 3))
    assert np.all(x.grad.numpy() == 2)
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(pe.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        pe.ones(1).backward()


def test_needs_input_grad_skips_work():
    seen = []

    class Probe(Function):
        def forward(self, a, b):
            seen.append(self.needs_input_grad)
            return a + b

        def backward(self, g):
            return g if self.needs_input_grad[0] else None, g if self.needs_input_grad[1] else None

    Probe.apply(pe.ones(2, requires_grad=True), pe.ones(2)).sum().backward()
    with pe.no_grad():
        Probe.apply(pe.ones(2, requires_grad=True), pe.ones(2))
    assert seen == [(True, False), (False, False)]


def test_detect_anomaly_names_the_op():
    x = pe.tensor([-1.0, 1.0], requires_grad=True)
    with pe.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="Unary.forward"):
            x.log()
        y = (x * 0).sqrt()  # forward is finite (0), backward divides by 0
        with pytest.raises(RuntimeError, match="backward"):
            y.sum().backward()
    z = x.log()  # outside the context: NaN passes silently
    assert np.isnan(z.detach().numpy()[0])


def test_deep_chain_does_not_recurse():
    x = pe.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(3000):
        y = y + 0.0
    y.sum().backward()
    assert x.grad.tolist() == [1.0]


def test_leaf_gradients_never_alias():
    """Leaves take fresh backward results without a copy; anything shared is copied first."""
    a = pe.tensor(np.arange(4, dtype=np.float32), requires_grad=True)
    b = pe.tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    g = np.full(4, 2.0, np.float32)
    (a + b).backward(pe.tensor(g))  # Add hands the user's gradient to both leaves
    assert not np.shares_memory(a.grad.numpy(), g)
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    (a * b).backward(pe.tensor(g))  # fresh products, accumulated into the existing grads
    np.testing.assert_array_equal(a.grad.numpy(), g + g * 1.0)
    np.testing.assert_array_equal(b.grad.numpy(), g + g * np.arange(4))
    np.testing.assert_array_equal(g, 2.0)
    c = pe.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    d = c.reshape(4)
    d.retain_grad()
    (d * 3).sum().backward()  # c's gradient is a view of d's, which d keeps
    assert not np.shares_memory(c.grad.numpy(), d.grad.numpy())
    np.testing.assert_array_equal(c.grad.numpy(), 3.0)


def test_large_leaf_gradients_are_copied_by_the_threaded_kernel(rng):
    """Above 1<<16 floats the CPU backend copies with _cpu.copy: the caller's gradient that Add
    hands to both leaves still reaches each as an independent, exact copy."""
    n = (1 << 16) + 5
    a = pe.tensor(rng.standard_normal(n).astype(np.float32), requires_grad=True)
    b = pe.tensor(rng.standard_normal(n).astype(np.float32), requires_grad=True)
    g = rng.standard_normal(n).astype(np.float32)
    (a + b).backward(pe.tensor(g))
    for t in (a, b):
        assert t.grad.numpy().tobytes() == g.tobytes()
        assert not np.shares_memory(t.grad.numpy(), g)
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.numpy()[0] = 7.0
    assert b.grad.numpy()[0] == g[0] and a._version == 0
