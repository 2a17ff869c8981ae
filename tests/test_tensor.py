import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
from pyengine.autograd import gradcheck

LAYOUT = {
    "reshape": ((2, 3, 4), lambda x: x.reshape(4, 6)),
    "reshape_infer": ((2, 3, 4), lambda x: x.reshape(-1, 4)),
    "view": ((2, 3, 4), lambda x: x.view(6, 4)),
    "view_tuple": ((2, 3, 4), lambda x: x.view((3, 8))),
    "flatten": ((2, 3, 4), lambda x: x.flatten(1)),
    "permute": ((2, 3, 4), lambda x: x.permute(2, 0, 1)),
    "permute_neg": ((2, 3, 4), lambda x: x.permute(-1, -3, -2)),
    "transpose": ((2, 3, 4), lambda x: x.transpose(0, 2)),
    "T": ((3, 5), lambda x: x.T),
    "unsqueeze": ((3, 4), lambda x: x.unsqueeze(1)),
    "squeeze": ((3, 1, 4), lambda x: x.squeeze(1)),
    "squeeze_all": ((1, 3, 1), lambda x: x.squeeze()),
    "expand": ((3, 1), lambda x: x.expand(3, 4)),
    "expand_new_dim": ((1, 4), lambda x: x.expand(2, 3, 4)),
    "int_index": ((4, 5), lambda x: x[1]),
    "scalar_index": ((4, 5), lambda x: x[1, 2]),
    "slice": ((6, 5), lambda x: x[1:5:2, 1:]),
    "ellipsis": ((2, 3, 4), lambda x: x[..., 1:3]),
    "none_index": ((3, 4), lambda x: x[None, :, 2]),
    "negative_index": ((3, 4), lambda x: x[-1, -2:]),
    "advanced_repeated": ((5, 3), lambda x: x[[0, 2, 2, 4, 0]]),
    "advanced_2d": ((4, 5), lambda x: x[[0, 1, 1], [2, 2, 3]]),
    "advanced_mixed": ((4, 5, 2), lambda x: x[:, [1, 1, 3]]),
    "empty_slice": ((4, 5), lambda x: x[2:2]),
    "clone": ((3, 4), lambda x: x.clone()),
}


@pytest.mark.parametrize("name", list(LAYOUT))
def test_layout_against_twin(device, rng, name):
    shape, fn = LAYOUT[name]
    check_op(fn, [rng.standard_normal(shape)], device=device)


@pytest.mark.parametrize("name", list(LAYOUT))
def test_layout_gradcheck(rng, name):
    shape, fn = LAYOUT[name]
    assert gradcheck(fn, [pe.tensor(rng.standard_normal(shape), requires_grad=True)])


@pytest.mark.parametrize("name", [n for n in LAYOUT if n not in ("view_tuple",)])
def test_layout_against_torch(torch, rng, name):
    shape, fn = LAYOUT[name]
    torch_check(torch, fn, [rng.standard_normal(shape)])


def test_repeated_index_accumulates_gradient(torch):
    x = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = pe.tensor([0, 0, 2, 0])
    x[idx].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]
    m = pe.tensor([True, False, True])
    y = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (y[m] * 2).sum().backward()
    assert y.grad.tolist() == [2.0, 0.0, 2.0]
    tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tx[torch.tensor([0, 0, 2, 0])].sum().backward()
    assert tx.grad.tolist() == x.grad.tolist()


CATS = [
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (2, 1), (2, 5)], 1),
    ([(2, 3, 4)] * 3, -1),
    ([(0, 3), (2, 3)], 0),
    ([(3,)], 0),
]


@pytest.mark.parametrize("shapes,dim", CATS)
def test_cat(device, torch, rng, shapes, dim):
    arrays = [rng.standard_normal(s) for s in shapes]
    check_op(lambda *xs: pe.cat(list(xs), dim), arrays, device=device)
    torch_check(
        torch, lambda *xs: pe.cat(list(xs), dim), arrays, lambda *xs: torch.cat(list(xs), dim)
    )


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack(device, torch, rng, dim):
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    check_op(lambda *xs: pe.stack(list(xs), dim), arrays, device=device)
    torch_check(
        torch, lambda *xs: pe.stack(list(xs), dim), arrays, lambda *xs: torch.stack(list(xs), dim)
    )
    assert gradcheck(
        lambda a, b: pe.stack([a, b], dim),
        [pe.tensor(arrays[0], requires_grad=True), pe.tensor(arrays[1], requires_grad=True)],
    )


def test_cat_partial_requires_grad():
    a = pe.ones(2, requires_grad=True)
    b = pe.ones(3)
    pe.cat([a, b]).sum().backward()
    assert a.grad.tolist() == [1.0, 1.0] and b.grad is None


def test_zero_dim_tensors(device):
    x = pe.tensor(2.5, device=device, requires_grad=True)
    assert x.shape == () and x.ndim == 0 and x.numel() == 1
    y = x * 3 + 1
    assert y.shape == () and y.item() == 8.5
    y.backward()
    assert x.grad.shape == () and x.grad.item() == 3.0
    assert pe.tensor([1.0, 2.0])[0].shape == ()
    assert pe.tensor(3.0).reshape(1, 1).shape == (1, 1)
    assert pe.tensor([4.0]).reshape(()).shape == ()
    with pytest.raises(TypeError):
        len(pe.tensor(1.0))


def test_creation_functions():
    pe.manual_seed(0)
    assert pe.zeros(2, 3).shape == (2, 3) and pe.zeros((2, 3)).dtype == pe.float32
    assert pe.ones(2, dtype=pe.float64).dtype == pe.float64
    assert pe.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert pe.arange(5).dtype == pe.int64 and pe.arange(0, 1, 0.5).tolist() == [0.0, 0.5]
    assert pe.randn(3, 4).shape == (3, 4)
    assert pe.zeros_like(pe.ones(2, 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert pe.tensor([1, 2]).dtype == pe.int64
    assert pe.tensor([True]).dtype == pe.bool_
    assert pe.tensor(np.ones(2, np.float16)).dtype == pe.float16  # float16 storage
    assert pe.tensor(np.ones(2, np.float64)).dtype == pe.float64
    pe.manual_seed(3)
    a = pe.randn(5).tolist()
    pe.manual_seed(3)
    assert pe.randn(5).tolist() == a
    with pytest.raises(ValueError, match="negative"):
        pe.zeros(2, -1)


def test_from_numpy_shares_memory_and_tensor_copies():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = pe.from_numpy(a)
    a[0, 0] = 42
    assert t[0, 0].item() == 42
    c = pe.tensor(a)
    a[0, 0] = 0
    assert c[0, 0].item() == 42
    assert np.shares_memory(t.numpy(), a)


def test_dtype_conversions(rng):
    assert pe.tensor(rng.standard_normal(2)).dtype == pe.float64  # NumPy dtypes are kept
    x = pe.tensor(rng.standard_normal((2, 3)), dtype=pe.float32, requires_grad=True)
    d = x.double()
    assert d.dtype == pe.float64
    (d * 2).sum().backward()
    assert x.grad.dtype == pe.float32 and np.all(x.grad.numpy() == 2)
    assert x.long().dtype == pe.int64
    assert x.to(pe.float64).dtype == pe.float64 and x.to("cpu") is x


def test_detach_item_tolist_repr():
    x = pe.tensor([[1.0, 2.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert x.detach().numpy().tolist() == [[1.0, 2.0]]
    assert "requires_grad=True" in repr(x)
    assert "grad_fn" in repr(x * 2)
    with pytest.raises(ValueError, match="2 elements"):
        x.item()
    assert float(pe.tensor([2.0])) == 2.0 and int(pe.tensor(3)) == 3


def test_setitem_and_fill():
    x = pe.zeros(3, 3)
    x[1] = 5.0
    x[0, pe.tensor([0, 2])] = pe.tensor([1.0, 2.0])
    x[2:, :1] = pe.ones(1, 1)
    assert x.tolist() == [[1.0, 0.0, 2.0], [5.0, 5.0, 5.0], [1.0, 0.0, 0.0]]
    x.fill_(2.0)
    assert x.sum().item() == 18.0
    x.zero_()
    x.copy_(pe.ones(3))
    assert x.sum().item() == 9.0


def test_layout_errors():
    x = pe.randn(2, 3)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        x.reshape(4, 4)
    with pytest.raises(ValueError, match="inferred"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match="permutation"):
        x.permute(0, 0)
    with pytest.raises(IndexError, match="range"):
        x.sum(2)
    with pytest.raises(IndexError, match="shape"):
        x[5]
    with pytest.raises(ValueError, match="expand"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match="cat"):
        pe.cat([x, pe.randn(3, 2)], 0)
    with pytest.raises(ValueError, match="stack"):
        pe.stack([x, pe.randn(3, 2)])
    with pytest.raises(ValueError):
        pe.cat([])
    with pytest.raises(IndexError, match="integer or bool"):
        x[pe.tensor([0.0])]
