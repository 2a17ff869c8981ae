"""Activations of csrc/activation.cpp: the C++ kernels against the float64 NumPy twin
(check_op), the twin's backward against finite differences (gradcheck), and both against
PyTorch; edge cases and argument errors."""

import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F

SHAPES = [(4, 3, 5, 6), (7,), (2, 40000)]  # the last one takes the threaded path

# (name, pyengine/torch call with the same F API)
CASES = [
    ("gelu", lambda F, x: F.gelu(x)),
    ("gelu_tanh", lambda F, x: F.gelu(x, approximate="tanh")),
    ("elu", lambda F, x: F.elu(x)),
    ("elu_alpha", lambda F, x: F.elu(x, alpha=0.3)),
    ("silu", lambda F, x: F.silu(x)),
    ("softplus", lambda F, x: F.softplus(x)),
    ("softplus_beta", lambda F, x: F.softplus(x, beta=2.0, threshold=3.0)),
    ("softplus_neg_beta", lambda F, x: F.softplus(x, beta=-0.5)),
    ("mish", lambda F, x: F.mish(x)),
    ("hardtanh", lambda F, x: F.hardtanh(x, -2.0, 3.0)),
    ("relu6", lambda F, x: F.relu6(x)),
]


def _x(rng, shape):
    return rng.standard_normal(shape) * 3


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,call", CASES)
def test_against_twin(rng, shape, name, call):
    check_op(lambda x: call(F, x), [_x(rng, shape)])


@pytest.mark.parametrize("name,call", CASES)
def test_gradcheck_twin(rng, name, call):
    x = pe.tensor(_x(rng, (3, 4)), dtype=pe.float64, requires_grad=True)
    assert pe.autograd.gradcheck(lambda x: call(F, x), [x])


@pytest.mark.parametrize("name,call", CASES)
def test_against_torch(torch, rng, name, call):
    x = _x(rng, (3, 4, 5)).astype(np.float32)
    torch_check(
        torch,
        lambda x: call(F, x),
        [x],
        lambda x: call(torch.nn.functional, x),
        atol=5e-6,  # gelu_tanh's gradient near x = -5: tanh rounds to -1 in one of the two
        rtol=1e-5,
    )


@pytest.mark.parametrize("shape,nw", [((4, 3, 5, 6), 3), ((4, 3, 5, 6), 1), ((6, 5), 5), ((7,), 1)])
def test_prelu(torch, rng, shape, nw):
    x = _x(rng, shape)
    w = rng.uniform(-0.5, 0.5, nw)
    check_op(F.prelu, [x, w])
    xs = pe.tensor(x[:2, ..., :2] if x.ndim > 2 else x[:2], dtype=pe.float64, requires_grad=True)
    ws = pe.tensor(w, dtype=pe.float64, requires_grad=True)
    assert pe.autograd.gradcheck(F.prelu, [xs, ws])
    torch_check(torch, F.prelu, [x.astype(np.float32), w], torch.nn.functional.prelu)


def test_edge_values():
    # Gradient at 0: elu takes the negative branch (alpha), as torch's elu_backward.
    x = pe.tensor([0.0, -1e30, 1e30, 100.0], requires_grad=True)
    F.elu(x, alpha=0.5).sum().backward()
    assert x.grad.tolist()[0] == 0.5
    # Softplus past the threshold is exactly x; below, stable for large |x|.
    y = F.softplus(pe.tensor([25.0, -100.0, 100.0]), threshold=30.0).tolist()
    assert y[0] == pytest.approx(25.0) and y[1] == pytest.approx(np.exp(-100), rel=1e-3)
    assert y[2] == 100.0
    g = F.gelu(pe.tensor([-10.0, 0.0, 10.0])).tolist()
    assert g == [pytest.approx(0.0, abs=1e-20), 0.0, 10.0]
    assert np.isnan(F.silu(pe.tensor([float("nan")])).item())
    assert np.isnan(F.relu6(pe.tensor([float("nan")])).item())
    # Hardtanh's gradient is zero at the bounds, as torch's.
    h = pe.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    F.hardtanh(h).sum().backward()
    assert h.grad.tolist() == [0.0, 1.0, 0.0]


def test_errors(rng):
    x = pe.tensor(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="beta"):
        F.softplus(x, beta=0.0)
    with pytest.raises(RuntimeError, match="channel size"):
        F.prelu(x, pe.ones(2))
    with pytest.raises(TypeError, match="floating"):
        F.silu(pe.tensor([1, 2]))
    with pytest.raises(ValueError, match="max_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        pe.backend.numpy_ref.activation_forward("swish", np.ones(2), np.ones(2))


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.GELU(),
        lambda nn: nn.GELU(approximate="tanh"),
        lambda nn: nn.ELU(alpha=0.7),
        lambda nn: nn.SiLU(),
        lambda nn: nn.Softplus(beta=1.5, threshold=4.0),
        lambda nn: nn.PReLU(3, init=0.1),
        lambda nn: nn.Mish(),
        lambda nn: nn.Hardtanh(-0.5, 2.0),
        lambda nn: nn.ReLU6(),
    ],
)
def test_modules_against_torch(torch, rng, make):
    ours, ref = make(nn), make(torch.nn)
    x = _x(rng, (2, 3, 4, 4)).astype(np.float32)
    # gelu_tanh's gradient near x = -5 rounds tanh to -1 in torch, a 2e-6 difference.
    torch_check(torch, ours, [x], ref, atol=5e-6)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    if isinstance(ours, nn.PReLU):
        xt = torch.tensor(x)
        ref(xt).sum().backward()
        ours(pe.tensor(x)).sum().backward()
        np.testing.assert_allclose(ours.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-5)
