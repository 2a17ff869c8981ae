import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck

BROADCAST = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((), (3,)),
    ((5,), ()),
    ((), ()),
    ((1,), (2, 3)),
    ((2, 1, 3), (1, 4, 1)),
    ((0, 3), (3,)),
    ((2, 0), (1,)),
    ((40, 1, 1000), (1, 33, 1000)),  # long enough for the threaded, strided path
    ((1000, 70), (1000, 70)),
]

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}


def _pos(rng, shape, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, shape)


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_binary_against_twin(device, rng, op, sa, sb):
    a = _pos(rng, sa) if op == "pow" else rng.standard_normal(sa)
    b = _pos(rng, sb) if op in ("div", "pow") else rng.standard_normal(sb)
    check_op(BINARY[op], [a, b], device=device)


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("sa,sb", [((3, 4), (4,)), ((2, 1, 3), (1, 4, 1)), ((), (2,))])
def test_binary_gradcheck(rng, op, sa, sb):
    a = pe.tensor(_pos(rng, sa), requires_grad=True)
    b = pe.tensor(_pos(rng, sb), requires_grad=True)
    assert gradcheck(BINARY[op], [a, b])


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize(
    "sa,sb", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((), (3,)), ((1,), (2, 3))]
)
def test_binary_against_torch(torch, rng, op, sa, sb):
    a = _pos(rng, sa) if op == "pow" else rng.standard_normal(sa)
    b = _pos(rng, sb) if op in ("div", "pow") else rng.standard_normal(sb)
    torch_check(torch, BINARY[op], [a, b])


SCALAR_FORMS = [
    lambda x: x + 2.5,
    lambda x: 2.5 + x,
    lambda x: x - 1.5,
    lambda x: 1.5 - x,
    lambda x: x * 3,
    lambda x: 3 * x,
    lambda x: x / 4,
    lambda x: 4 / x,
    lambda x: x**2,
    lambda x: x**0.5,
    lambda x: 2**x,
    lambda x: -x,
]


@pytest.mark.parametrize("form", range(len(SCALAR_FORMS)))
def test_python_scalar_operands(device, rng, torch, form):
    x = _pos(rng, (3, 5))
    check_op(SCALAR_FORMS[form], [x], device=device)
    torch_check(torch, SCALAR_FORMS[form], [x])


UNARY = {
    "neg": (lambda x: -x, False),
    "exp": (lambda x: x.exp(), False),
    "log": (lambda x: x.log(), True),
    "sqrt": (lambda x: x.sqrt(), True),
    "abs": (lambda x: x.abs(), False),
    "relu": (lambda x: x.relu(), False),
    "sigmoid": (lambda x: x.sigmoid(), False),
    "tanh": (lambda x: x.tanh(), False),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), False),
    "pow3": (lambda x: x.pow(3), False),
    "pow_frac": (lambda x: x**1.7, True),
}


@pytest.mark.parametrize("op", list(UNARY))
@pytest.mark.parametrize("shape", [(), (5,), (3, 4, 5), (0, 4), (70000,)])
def test_unary_against_twin(device, rng, op, shape):
    fn, positive = UNARY[op]
    x = _pos(rng, shape) if positive else rng.standard_normal(shape)
    check_op(fn, [x], device=device)


@pytest.mark.parametrize("op", list(UNARY))
def test_unary_gradcheck(rng, op):
    fn, positive = UNARY[op]
    x = _pos(rng, (2, 3)) if positive else rng.standard_normal((2, 3))
    assert gradcheck(fn, [pe.tensor(x, requires_grad=True)])


TORCH_UNARY = {
    "exp": (lambda x: x.exp(), None),
    "log": (lambda x: x.log(), None),
    "sqrt": (lambda x: x.sqrt(), None),
    "pow": (lambda x: x.pow(2.5), None),
    "relu": (lambda x: x.relu(), None),
    "sigmoid": (lambda x: x.sigmoid(), None),
    "tanh": (lambda x: x.tanh(), None),
    "abs": (lambda x: x.abs(), None),
    "leaky_relu": (
        lambda x: F.leaky_relu(x, 0.1),
        lambda x: __import__("torch").nn.functional.leaky_relu(x, 0.1),
    ),
}


@pytest.mark.parametrize("op", list(TORCH_UNARY))
def test_unary_against_torch(torch, rng, op):
    fn, tfn = TORCH_UNARY[op]
    x = _pos(rng, (4, 6)) if op in ("log", "sqrt", "pow") else rng.standard_normal((4, 6))
    x[0, :3] = [0.0, -0.0, 30.0] if op not in ("log", "sqrt", "pow") else [1.0, 2.0, 3.0]
    torch_check(torch, fn, [x], tfn)


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "abs"])
def test_gradient_at_zero_matches_torch(torch, device, op):
    fns = {
        "relu": (F.relu, torch.relu),
        "leaky_relu": (F.leaky_relu, torch.nn.functional.leaky_relu),
        "abs": (pe.abs, torch.abs),
    }
    f, tf = fns[op]
    x = pe.tensor([0.0, -1.0, 2.0], device=device, requires_grad=True)
    f(x).sum().backward()
    tx = torch.tensor([0.0, -1.0, 2.0], requires_grad=True)
    tf(tx).sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), tx.grad.numpy())


def test_relu_grad_at_zero_is_zero(device):
    for dtype in (pe.float32, pe.float64):
        x = pe.zeros(4, dtype=dtype, device=device, requires_grad=True)
        F.relu(x).sum().backward()
        assert np.all(x.grad.cpu().numpy() == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_propagates_like_torch(torch, dtype):
    v = [float("nan"), -1.0, 1.0, float("inf"), -float("inf")]
    for name in ("relu", "sigmoid", "tanh", "exp", "abs"):
        got = getattr(pe, name)(pe.tensor(v, dtype=dtype)).numpy()
        ref = getattr(torch, name)(torch.tensor(v, dtype=getattr(torch, dtype))).numpy()
        np.testing.assert_array_equal(got, ref, err_msg=name)


def test_sigmoid_extremes_are_finite(device):
    x = pe.tensor([-200.0, -50.0, 0.0, 50.0, 200.0], device=device)
    y = x.sigmoid().cpu().numpy()
    assert np.all(np.isfinite(y)) and y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5


def test_integer_arithmetic_stays_integer():
    a = pe.tensor([1, 2, 3])
    b = pe.tensor([4, 5, 6])
    assert (a + b).dtype == pe.int64 and (a + b).tolist() == [5, 7, 9]
    assert (a * 2).tolist() == [2, 4, 6]
    assert (a / 2).dtype == pe.float32 and (a / 2).tolist() == [0.5, 1.0, 1.5]
    assert (a + 0.5).dtype == pe.float32


def test_inplace_arithmetic(device):
    x = pe.tensor([1.0, 2.0], device=device)
    x += 1
    x *= pe.tensor([2.0, 3.0], device=device)
    x -= 1
    x /= 2
    np.testing.assert_allclose(x.cpu().numpy(), [1.5, 4.0])
    with pytest.raises(RuntimeError, match="shape"):
        x += pe.ones(3, 2, device=device)
    w = pe.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w += 1
    with pe.no_grad():
        w -= 0.5
    assert w.tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    "op", ["relu", "leaky_relu", "sigmoid", "tanh", "exp", "log", "sqrt", "neg", "abs", "pow"]
)
def test_unary_kernel_in_place(rng, op):
    """unary_forward with y the same array as x (as the fused ReLUs and neg call it) gives the
    out-of-place result bit for bit, on the threaded path too."""
    from pyengine.backend.device import _cpu

    n = 70001
    x = (_pos(rng, n) if op in ("log", "sqrt", "pow") else rng.standard_normal(n)).astype(
        np.float32
    )
    ref = np.empty_like(x)
    _cpu.unary_forward(op, x, ref, 1.7)
    _cpu.unary_forward(op, x, x, 1.7)
    assert x.tobytes() == ref.tobytes()


@pytest.mark.parametrize("sa,sb", [((70001,), (70001,)), ((70001,), (1,)), ((10000, 7), (7,))])
def test_binary_kernel_in_place(rng, sa, sb):
    """binary_forward with y the same array as a (Linear's bias add, the scaling of a mean) gives
    the out-of-place result bit for bit: flat, scalar and broadcast rows."""
    from pyengine.backend.device import _cpu

    b = rng.standard_normal(sb).astype(np.float32)
    for op in ("add", "mul", "div", "maximum"):
        a = rng.standard_normal(sa).astype(np.float32)
        ref = np.empty_like(a)
        _cpu.binary_forward(op, a, b, ref)
        _cpu.binary_forward(op, a, b, a)
        assert a.tobytes() == ref.tobytes()


def test_comparisons():
    a = pe.tensor([1.0, 2.0, 3.0])
    assert (a > 1.5).tolist() == [False, True, True]
    assert (a == pe.tensor([1.0, 0.0, 3.0])).tolist() == [True, False, True]
    assert (a <= 2).dtype == pe.bool_


@pytest.mark.parametrize("n", [5, 1 << 16, (1 << 16) + 3])
def test_copy_kernel_against_twin(rng, n):
    """_cpu.copy (the CPU backend's threaded, non-temporal copy of large arrays) against its NumPy
    twin, bit for bit, NaN/inf/-0 included, from an unaligned start too."""
    from pyengine.backend import numpy_ref
    from pyengine.backend.device import _cpu

    x = rng.standard_normal(n).astype(np.float32)
    x[:3] = [np.nan, -0.0, np.inf]
    for fn in (_cpu.copy, numpy_ref.copy):
        y = np.full(n, 5.0, np.float32)
        fn(x, y)
        assert y.tobytes() == x.tobytes()
        y = np.full(n + 1, 5.0, np.float32)
        fn(x[1:], y[2:])  # destination not 16-byte aligned
        assert y[2:].tobytes() == x[1:].tobytes() and y[:2].tolist() == [5.0, 5.0]
    with pytest.raises(ValueError, match="same number of elements"):
        _cpu.copy(x, np.empty(n + 1, np.float32))
    with pytest.raises(ValueError, match="float32"):
        _cpu.copy(x, np.empty(n, np.float64))
    with pytest.raises(ValueError, match="copy: y"):
        _cpu.copy(x, x)
    big = pe.tensor(x).clone()._data
    assert big.tobytes() == x.tobytes() and not np.shares_memory(big, x)


@pytest.mark.parametrize("n", [1, 7, 8, 9, (1 << 14) + 5, 3 << 14])
def test_relu_mask_kernels_against_twin(rng, n):
    """The ReLU that keeps a bit per element for backward: output and mask equal the twin's bit
    for bit (0, -0, NaN and inf included; lengths off a whole byte and across the threads'
    chunks), and the gradient from the mask equals the one from the saved output."""
    from pyengine.backend import numpy_ref
    from pyengine.backend.device import _cpu

    x = rng.standard_normal(n).astype(np.float32)
    x[: min(n, 5)] = [0.0, -0.0, np.nan, np.inf, -np.inf][: min(n, 5)]
    y, mask = np.empty_like(x), np.full((n + 7) // 8, 0xA5, np.uint8)
    _cpu.relu_mask_forward(x, y, mask)
    y64, mask64 = np.empty(n), np.empty_like(mask)
    numpy_ref.relu_mask_forward(x.astype(np.float64), y64, mask64)
    np.testing.assert_array_equal(mask, mask64)
    np.testing.assert_array_equal(y, y64.astype(np.float32))
    g = rng.standard_normal(n).astype(np.float32)
    gx, want = np.empty_like(g), np.empty_like(g)
    _cpu.relu_mask_backward(mask, g, gx)
    _cpu.unary_backward("relu", y, g, want)
    np.testing.assert_array_equal(gx, want)
    gx64 = np.empty(n)
    numpy_ref.relu_mask_backward(mask, g.astype(np.float64), gx64)
    np.testing.assert_array_equal(gx, gx64.astype(np.float32))
    with pytest.raises(ValueError, match="bytes"):
        _cpu.relu_mask_forward(x, y, np.empty(n // 8 + 2, np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        _cpu.relu_mask_backward(mask.astype(np.int32), g, gx)


def test_relu_keeps_a_bit_mask_not_its_output(torch, rng):
    """Through autograd a float32 ReLU saves a packed bit mask (n/8 bytes) for backward, and its
    gradient equals PyTorch's; an in-place change of the output after the ReLU does not reach
    the mask (the output is not saved), so the gradient is the graph's as recorded."""
    a = rng.standard_normal((3, 50, 7)).astype(np.float32)
    x = pe.tensor(a, requires_grad=True)
    y = x.relu()
    (saved,) = y._ctx.saved
    assert saved.dtype == np.uint8 and saved.size == (a.size + 7) // 8
    g = rng.standard_normal(a.shape).astype(np.float32)
    y.backward(pe.tensor(g))
    tx = torch.tensor(a, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(g))
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    x.grad = None
    y = x.relu()
    y.mul_(2.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2.0 * (a > 0))
