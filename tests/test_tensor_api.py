"""Tensor behaviour as PyTorch's (issue 13's behaviour bugs), factories, dtype promotion and
float16 storage."""

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn as nn


def test_comparisons_with_tensors_that_require_grad():
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    assert (x == x).tolist() == [True, True]
    assert (x.detach() < x).tolist() == [False, False]
    assert (x >= x * 2).tolist() == [False, False]
    assert not (x == x).requires_grad
    with pytest.raises(TypeError):
        x < None  # noqa: B015


def test_data_is_a_detached_tensor_sharing_storage():
    p = nn.Parameter(pe.ones(3))
    d = p.data
    assert isinstance(d, pe.Tensor) and not d.requires_grad and d.shape == (3,)
    d[0] = 5.0
    assert p.tolist()[0] == 5.0  # shared storage
    p.data = pe.zeros(3)
    assert p.tolist() == [0.0, 0.0, 0.0] and p.requires_grad and p.is_leaf
    p.data.mul_(2).add_(1.0)
    assert p.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="Tensor"):
        p.data = np.zeros(3)


def test_numpy_array_on_the_left_returns_a_tensor():
    t = pe.tensor([1.0, 2.0])
    for out in (np.ones(2) + t, np.ones(2) * t, np.ones(2) - t, np.float32(2) * t):
        assert isinstance(out, pe.Tensor)
    assert (np.ones(2) - t).tolist() == [0.0, -1.0]


def test_requires_grad_on_integer_tensor_raises():
    t = pe.tensor([1, 2])
    with pytest.raises(RuntimeError, match="floating"):
        t.requires_grad = True
    assert not t.requires_grad


def test_tensor_constructor_forms():
    assert pe.Tensor(2, 3).shape == (2, 3) and pe.Tensor(2, 3).dtype == pe.float32
    assert pe.Tensor([1.0, 2.0]).tolist() == [1.0, 2.0]
    assert pe.Tensor().shape == (0,)
    with pytest.raises(ValueError, match="negative"):
        pe.Tensor(2, -1)


def test_dtype_promotion_as_torch(torch):
    cases = [
        (np.float32, np.float64, (3,), (3,)),
        (np.float64, np.float32, (3,), ()),  # 0-d float32 takes the dimensioned float64
        (np.float32, np.float64, (3,), ()),  # 0-d float64 does not widen a float32 tensor
        (np.int64, np.float64, (3,), (3,)),
    ]
    for da, db, sa, sb in cases:
        a, b = np.ones(sa, da), np.full(sb, 2, db)
        got = pe.tensor(a) + pe.tensor(b)
        ref = torch.tensor(a) + torch.tensor(b)
        assert str(got.dtype) == str(ref.dtype).replace("torch.", ""), (da, db, sa, sb)
    x = pe.ones(2, 2, requires_grad=True)
    y = pe.ones(2, 2, dtype=pe.float64, requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.dtype == pe.float32 and y.grad.dtype == pe.float64
    assert (pe.ones(2, 3) @ pe.ones(3, 2, dtype=pe.float64)).dtype == pe.float64


def test_float16_storage_and_conversion():
    h = pe.tensor([1.0, 2.5, 65504.0], dtype=pe.float16)
    assert h.dtype == pe.float16 and h.half().dtype == pe.float16
    assert (h + 1).dtype == pe.float16
    assert h.float().tolist() == [1.0, 2.5, 65504.0]
    assert pe.tensor(np.ones(2, np.float16)).dtype == pe.float16
    x = pe.tensor([0.5, 1.5], requires_grad=True)
    x.half().float().sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_type_int_and_casts():
    t = pe.tensor([1.7, -2.2])
    assert t.type() == "pyengine.FloatTensor" and t.double().type() == "pyengine.DoubleTensor"
    assert t.int().dtype == pe.int32 and t.int().tolist() == [1, -2]
    assert t.type(pe.float64).dtype == pe.float64
    assert t.type("torch.LongTensor").dtype == pe.int64


def test_factories(torch):
    np.testing.assert_allclose(pe.linspace(-1, 2, 7).numpy(), torch.linspace(-1, 2, 7).numpy())
    assert pe.linspace(0, 1, 1).tolist() == [0.0]
    assert pe.eye(3).tolist() == torch.eye(3).tolist()
    assert pe.eye(2, 3).tolist() == torch.eye(2, 3).tolist()
    assert pe.full((2, 2), 7.0).tolist() == [[7.0, 7.0], [7.0, 7.0]]
    t = pe.ones(2, 3, dtype=pe.float64)
    for f in (pe.zeros_like, pe.ones_like, pe.empty_like, pe.rand_like):
        assert f(t).shape == (2, 3) and f(t).dtype == pe.float64
    assert pe.full_like(t, 4).tolist() == [[4.0] * 3] * 2
    r = pe.randint_like(t, 5)
    assert r.shape == (2, 3) and r.numpy().max() < 5
    assert t.new_zeros(4).dtype == pe.float64 and t.new_ones((2, 1)).tolist() == [[1.0], [1.0]]
    assert t.new_full((2,), 3).tolist() == [3.0, 3.0] and t.new_empty(3).shape == (3,)
    assert t.new_tensor([1, 2]).dtype == pe.float64
    assert pe.zeros(2).new_zeros(2, requires_grad=True).requires_grad


def test_inplace_arithmetic_values(torch):
    for lib in (pe, torch):
        t = lib.tensor([1.0, -2.0, 3.0])
        t.add_(1).mul_(2).clamp_(-1, 5)
        t.add_(lib.tensor([1.0, 1.0, 1.0]), alpha=0.5)
        t.sub_(0.25)
        t.div_(2)
        if lib is pe:
            got = t.tolist()
        else:
            ref = t.tolist()
    assert got == ref
    z = pe.ones(3)
    assert z.zero_().tolist() == [0.0] * 3 and z.fill_(2).tolist() == [2.0] * 3
    assert z.fill_(pe.tensor(4.0)).tolist() == [4.0] * 3


def test_mT_and_builtin_abs():
    x = pe.randn(2, 3, 4)
    assert x.mT.shape == (2, 4, 3)
    with pytest.raises(RuntimeError, match="mT"):
        pe.ones(3).mT  # noqa: B018
    assert abs(pe.tensor([-1.5, 2.0])).tolist() == [1.5, 2.0]


def test_matmul_broadcasting_shapes(torch):
    for sa, sb in [((2, 3, 4), (4, 5)), ((4,), (4,)), ((4,), (4, 2)), ((3, 2, 4), (1, 4, 2))]:
        a, b = np.ones(sa, np.float32), np.ones(sb, np.float32)
        got = pe.tensor(a) @ pe.tensor(b)
        assert got.shape == tuple((torch.tensor(a) @ torch.tensor(b)).shape)
    assert (np.ones((2, 3), np.float32) @ pe.ones(3, 2)).shape == (2, 2)
