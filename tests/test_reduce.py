import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck

SUM_CASES = [
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((3, 4), 1, True),
    ((3, 4), -1, False),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (0, 2), True),
    ((2, 3, 4, 5), (1, 3), False),
    ((2, 1, 4), 1, False),
    ((), None, False),
    ((), 0, True),
    ((0, 3), 0, False),
    ((0, 3), 1, True),
    ((64, 600), 0, False),
    ((64, 600), 1, False),
    ((8, 70, 70), (0, 2), True),
]


@pytest.mark.parametrize("shape,dim,keepdim", SUM_CASES)
def test_sum_against_twin(device, rng, shape, dim, keepdim):
    check_op(lambda x: x.sum(dim, keepdim), [rng.standard_normal(shape)], device=device)


@pytest.mark.parametrize("shape,dim,keepdim", [c for c in SUM_CASES if 0 not in c[0]])
def test_mean_against_twin(device, rng, shape, dim, keepdim):
    check_op(lambda x: x.mean(dim, keepdim), [rng.standard_normal(shape)], device=device)


@pytest.mark.parametrize("shape,dim,keepdim", [((2, 3), None, False), ((2, 3, 2), (0, 2), True)])
def test_sum_mean_gradcheck(rng, shape, dim, keepdim):
    x = pe.tensor(rng.standard_normal(shape), requires_grad=True)
    assert gradcheck(lambda x: x.sum(dim, keepdim), [x])
    assert gradcheck(lambda x: x.mean(dim, keepdim), [x])


@pytest.mark.parametrize("shape,dim,keepdim", [c for c in SUM_CASES if 0 not in c[0]])
def test_sum_mean_against_torch(torch, rng, shape, dim, keepdim):
    x = rng.standard_normal(shape)
    if dim is None:
        torch_check(torch, lambda x: x.sum(), [x], atol=1e-4)
        torch_check(torch, lambda x: x.mean(), [x])
    else:
        torch_check(torch, lambda x: x.sum(dim, keepdim), [x], atol=1e-4)
        torch_check(torch, lambda x: x.mean(dim, keepdim), [x])


def test_sum_of_empty_is_zero(device):
    x = pe.zeros(0, 3, device=device, requires_grad=True)
    s = x.sum(0)
    assert s.shape == (3,) and s.cpu().tolist() == [0.0, 0.0, 0.0]
    s.sum().backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize(
    "shape,dim", [((1 << 20,), None), ((200000, 5), 0), ((5, 200000), 1), ((3000, 7, 40), (0, 2))]
)
def test_long_sum_is_accurate(device, shape, dim):
    x = pe.full(shape, 0.1, device=device)
    n = x.numel() // x.sum(dim).numel()
    np.testing.assert_allclose(x.sum(dim).cpu().numpy(), float(np.float32(0.1)) * n, rtol=1e-5)


MAX_CASES = [
    ((5,), 0, False),
    ((3, 4), 1, False),
    ((3, 4), 0, True),
    ((2, 3, 4), -2, True),
    ((2, 3, 4), 1, False),
    ((1, 1), 0, False),
    ((), 0, False),
    ((64, 1000), 1, False),
]


@pytest.mark.parametrize("shape,dim,keepdim", MAX_CASES)
def test_max_against_twin(device, rng, shape, dim, keepdim):
    check_op(lambda x: x.max(dim, keepdim), [rng.standard_normal(shape)], device=device)


def test_max_gradcheck(rng):
    x = pe.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda x: x.max(1).values, [x])
    assert gradcheck(lambda x: x.max(), [x])


@pytest.mark.parametrize("shape,dim,keepdim", [c for c in MAX_CASES if c[0]])
def test_max_against_torch(torch, rng, shape, dim, keepdim):
    torch_check(torch, lambda x: tuple(x.max(dim, keepdim)), [rng.standard_normal(shape)])


@pytest.mark.parametrize("dim", [0, 1])
def test_max_ties_pick_torch_index(torch, device, dim):
    v = [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, -1.0, 3.0]]
    x = pe.tensor(v, device=device, requires_grad=True)
    tx = torch.tensor(v, requires_grad=True)
    r, tr = x.max(dim), tx.max(dim)
    np.testing.assert_array_equal(r.indices.cpu().numpy(), tr.indices.numpy())
    r.values.sum().backward()
    tr.values.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), tx.grad.numpy())
    assert x.argmax().item() == tx.argmax().item()


def test_max_nan_wins(device):
    x = pe.tensor([[1.0, float("nan"), 5.0]], device=device)
    r = x.max(1)
    assert np.isnan(r.values.item()) and r.indices.item() == 1


def test_global_max_and_integer_max():
    assert pe.tensor([[1.0, 7.0], [3.0, 2.0]]).max().item() == 7.0
    r = pe.tensor([[1, 7], [3, 2]]).max(0)
    assert r.values.tolist() == [3, 7] and r.indices.tolist() == [1, 0]


SOFTMAX_CASES = [
    ((4, 7), 1),
    ((4, 7), 0),
    ((2, 3, 5), 1),
    ((2, 3, 5), -1),
    ((6,), 0),
    ((1, 1), 1),
    ((128, 300), 1),
    ((3, 400, 20), 1),
]


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES)
def test_softmax_against_twin(device, rng, shape, dim, log):
    fn = F.log_softmax if log else F.softmax
    check_op(lambda x: fn(x, dim), [3 * rng.standard_normal(shape)], device=device)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_gradcheck(rng, log):
    fn = F.log_softmax if log else F.softmax
    x = pe.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda x: fn(x, 1), [x])
    assert gradcheck(lambda x: fn(x, 0), [x])


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES[:6])
def test_softmax_against_torch(torch, rng, shape, dim, log):
    x = 3 * rng.standard_normal(shape)
    name = "log_softmax" if log else "softmax"
    torch_check(
        torch,
        lambda x: getattr(F, name)(x, dim),
        [x],
        lambda x: getattr(torch.nn.functional, name)(x, dim),
    )


def test_softmax_is_stable_for_large_logits(device):
    x = pe.tensor([[1000.0, 0.0, -1000.0]], device=device)
    y = F.softmax(x, 1).cpu().numpy()
    ly = F.log_softmax(x, 1).cpu().numpy()
    np.testing.assert_allclose(y, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(ly, [[0.0, -1000.0, -2000.0]])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n,c", [(5, 3), (1, 10), (64, 100)])
def test_cross_entropy(device, torch, rng, reduction, n, c):
    x = 2 * rng.standard_normal((n, c))
    t = rng.integers(0, c, n)
    check_op(lambda x, t: F.cross_entropy(x, t, reduction=reduction), [x, t], device=device)
    torch_check(
        torch,
        lambda x, t: F.cross_entropy(x, t, reduction=reduction),
        [x, t],
        lambda x, t: torch.nn.functional.cross_entropy(x, t, reduction=reduction),
    )


def test_cross_entropy_gradcheck(rng):
    x = pe.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    t = pe.tensor([0, 2, 1, 2])
    assert gradcheck(lambda x: F.cross_entropy(x, t), [x])
    assert gradcheck(lambda x: F.nll_loss(F.log_softmax(x, 1), t, reduction="sum"), [x])


LOSSES = {"mse": ("mse_loss", "mse_loss"), "l1": ("l1_loss", "l1_loss")}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (1, 1, 5, 5)])
def test_regression_losses(device, torch, rng, loss, reduction, shape):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    name, tname = LOSSES[loss]
    fn = getattr(F, name)
    check_op(lambda a, b: fn(a, b, reduction=reduction), [a, b], device=device)
    torch_check(
        torch,
        lambda a, b: fn(a, b, reduction=reduction),
        [a, b],
        lambda a, b: getattr(torch.nn.functional, tname)(a, b, reduction=reduction),
    )
    assert gradcheck(
        lambda a, b: fn(a, b, reduction=reduction),
        [pe.tensor(a[..., :2], requires_grad=True), pe.tensor(b[..., :2], requires_grad=True)],
    )


def test_loss_modules_match_functional(rng):
    a, b = pe.tensor(rng.standard_normal((3, 4))), pe.tensor(rng.standard_normal((3, 4)))
    t = pe.tensor([0, 1, 3])
    assert pe.nn.MSELoss()(a, b).item() == F.mse_loss(a, b).item()
    assert pe.nn.L1Loss("sum")(a, b).item() == F.l1_loss(a, b, "sum").item()
    assert pe.nn.CrossEntropyLoss()(a, t).item() == F.cross_entropy(a, t).item()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_with_nan_do_not_crash(torch, dtype):
    nan = float("nan")
    x = pe.tensor([[nan, 1.0], [0.0, 1.0]], dtype=dtype, requires_grad=True)
    t = pe.tensor([0, 1])
    ce = F.cross_entropy(x, t)
    ce.backward()
    tx = torch.tensor([[nan, 1.0], [0.0, 1.0]], dtype=getattr(torch, dtype), requires_grad=True)
    tce = torch.nn.functional.cross_entropy(tx, torch.tensor([0, 1]))
    tce.backward()
    assert np.isnan(ce.item()) and np.isnan(tce.item())
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5)
    y = pe.tensor([1.0, nan, float("inf")], dtype=dtype, requires_grad=True)
    m = F.mse_loss(y, pe.tensor([0.0, 0.0, 0.0], dtype=dtype))
    m.backward()
    assert np.isnan(m.item()) and y.grad.shape == (3,)
