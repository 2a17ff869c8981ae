"""Gradient integrity (issue 11, finding 5): an in-place change of a tensor that autograd saved
makes backward raise, naming the node; an in-place change of an unsaved tensor is recorded in the
graph and gives PyTorch's gradients."""

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn as nn

# Each in-place op, applied to a tensor that exp() saved (exp saves its output).
INPLACE = {
    "+=": lambda y: y.__iadd__(1.0),
    "-=": lambda y: y.__isub__(1.0),
    "*=": lambda y: y.__imul__(2.0),
    "/=": lambda y: y.__itruediv__(2.0),
    "__setitem__": lambda y: y.__setitem__(0, 100.0),
    "relu_": lambda y: y.relu_(),
    "zero_": lambda y: y.zero_(),
    "fill_": lambda y: y.fill_(3.0),
    "copy_": lambda y: y.copy_(pe.ones(3)),
    "add_": lambda y: y.add_(1.0),
    "mul_": lambda y: y.mul_(2.0),
    "clamp_": lambda y: y.clamp_(0, 2),
    "masked_fill_": lambda y: y.masked_fill_(pe.tensor([True, False, True]), 0.0),
    "data view": lambda y: y.data.add_(1.0),
    "detached view": lambda y: y.detach().__setitem__(1, 0.0),
    "reshaped view": lambda y: y.reshape(3, 1).__setitem__((0, 0), 0.0),
}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_saved_tensor_raises(name):
    x = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.exp()
    INPLACE[name](y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*ExpBackward"):
        y.sum().backward()


def test_issue_reproducers_raise():
    x = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.exp()
    y += 1
    with pytest.raises(RuntimeError, match=r"version 1.*\+=.*expected version 0"):
        y.sum().backward()
    y = x.exp()
    y[0] = 100
    with pytest.raises(RuntimeError, match="__setitem__"):
        y.sum().backward()


@pytest.mark.parametrize(
    "op,expected",
    [
        (lambda y, lib: y.__iadd__(1.0), [2, 2, 2]),
        (lambda y, lib: y.__imul__(3.0), [6, 6, 6]),
        (lambda y, lib: y.__setitem__(0, 100.0), [0, 2, 2]),
        (lambda y, lib: y.__setitem__(slice(1, None), lib.tensor([5.0, 6.0])), [2, 0, 0]),
        (lambda y, lib: y.add_(lib.ones(3), alpha=2), [2, 2, 2]),
        (lambda y, lib: y.clamp_(max=3.0), [2, 0, 0]),
        (lambda y, lib: y.relu_(), [2, 2, 2]),
        (lambda y, lib: y.zero_(), [0, 0, 0]),
        (lambda y, lib: y.copy_(lib.ones(3)), [0, 0, 0]),
    ],
)
def test_inplace_on_unsaved_tensor_gives_torch_gradients(torch, op, expected):
    # x * 2 saves only the constant 2, so y can change; the gradient follows the in-place op.
    for lib in (pe, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 2
        op(y, lib)
        y.sum().backward()
        assert x.grad.tolist() == [float(v) for v in expected], lib.__name__


def test_inplace_value_operand_gets_gradient(torch):
    grads = []
    for lib in (pe, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        v = lib.tensor([4.0], requires_grad=True)
        y = x * 2
        y[1:] = v * 3
        (y * lib.tensor([1.0, 10.0, 100.0])).sum().backward()
        grads.append((x.grad.tolist(), v.grad.tolist()))
    assert grads[0] == grads[1]


def test_version_counts_inplace_changes():
    t = pe.zeros(3)
    v0 = t._version
    t += 1
    t.mul_(2)
    t[0] = 5
    assert t._version == v0 + 3
    assert t.detach()._version == t._version  # views share the storage's counter
    assert pe.zeros(3)._version == 0


def test_leaf_inplace_under_grad_mode_raises():
    w = pe.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w += 1
    with pe.no_grad():
        w += 1
    assert w.tolist() == [2.0, 2.0, 2.0]


def test_optimizer_step_on_saved_parameter_raises():
    lin = nn.Linear(3, 2)
    opt = pe.optim.SGD(lin.parameters(), lr=0.1)
    x = pe.randn(4, 3, requires_grad=True)  # so that linear saves the weight
    loss = lin(x).sum()
    loss.backward(retain_graph=True)
    opt.step()  # rewrites the weight that the graph saved for x's gradient... and for its own
    loss2 = (lin(x) * lin(x)).sum()
    opt.step()
    with pytest.raises(RuntimeError, match="SGD.step"):
        loss2.backward()


def test_optimizer_step_then_fresh_forward_works():
    lin = nn.Linear(3, 2)
    opt = pe.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        loss = (lin(pe.randn(4, 3)) ** 2).mean()
        loss.backward()
        opt.step()
    assert np.isfinite(loss.item())


def test_inplace_int_tensor_rejects_float_result():
    t = pe.tensor([1, 2, 3])
    t += 2
    assert t.tolist() == [3, 4, 5]
    with pytest.raises(RuntimeError, match="can't be cast"):
        t += 1.5


def test_inplace_change_of_a_where_mask_raises():
    x = pe.tensor([1.0, -2.0, 3.0], requires_grad=True)
    mask = x.detach() > 0
    y = pe.where(mask, x, x * 0)
    mask[0] = False
    with pytest.raises(RuntimeError, match="WhereBackward"):
        y.sum().backward()
