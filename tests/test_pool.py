import itertools

import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck


def distinct(rng, shape):
    """Values with no ties even after rounding to float32, so argmax is unambiguous."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.37 - n * 0.1).astype(np.float64)


MAX_ROWS = [
    # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 7, 9), 3, 2, 1, 1, False),
    ((1, 2, 7, 7), 3, 2, 1, 1, True),
    ((2, 2, 9, 8), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((1, 4, 6, 5), 2, 2, 1, 2, True),
    ((3, 2, 5, 5), 5, 1, 2, 1, False),
]


@pytest.mark.parametrize("shape,k,s,p,d,ceil", MAX_ROWS)
def test_max_pool2d_against_twin(device, rng, shape, k, s, p, d, ceil):
    x = distinct(rng, shape)
    check_op(lambda t: F.max_pool2d(t, k, s, p, d, ceil, return_indices=True), [x], device=device)


AVG_ROWS = [
    # shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((2, 3, 7, 9), 3, 2, 1, False, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, False, None),
    ((2, 2, 9, 8), (3, 2), (2, 1), (1, 0), False, False, None),
    ((1, 3, 6, 5), 4, 3, 2, True, True, 5),
]


@pytest.mark.parametrize("shape,k,s,p,ceil,cip,div", AVG_ROWS)
def test_avg_pool2d_against_twin(device, rng, shape, k, s, p, ceil, cip, div):
    x = rng.standard_normal(shape)
    check_op(lambda t: F.avg_pool2d(t, k, s, p, ceil, cip, div), [x], device=device)


@pytest.mark.parametrize(
    "shape,out",
    [
        ((2, 3, 8, 8), 1),
        ((2, 3, 7, 9), (3, 4)),
        ((1, 2, 5, 5), (5, None)),
        ((1, 2, 4, 6), (7, 9)),
        ((2, 3, 37, 21), (1, 1)),
    ],
)
def test_adaptive_avg_pool2d_against_twin(device, rng, shape, out):
    x = rng.standard_normal(shape)
    check_op(lambda t: F.adaptive_avg_pool2d(t, out), [x], device=device)


def test_unbatched_input(device, rng):
    x = distinct(rng, (3, 6, 6))
    check_op(lambda t: F.max_pool2d(t, 2, return_indices=True), [x], device=device)
    check_op(lambda t: F.avg_pool2d(t, 3, 1, 1), [rng.standard_normal((3, 6, 6))], device=device)


def test_gradcheck_twins(rng):
    x = pe.tensor(distinct(rng, (1, 2, 5, 4)), dtype="float64", requires_grad=True)
    assert gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1, 1, True), [x])
    assert gradcheck(lambda t: F.max_pool2d(t, 2, 1, 1, 2), [x])
    y = pe.tensor(rng.standard_normal((1, 2, 5, 4)), dtype="float64", requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1, True, True), [y])
    assert gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1, True, False), [y])
    assert gradcheck(lambda t: F.avg_pool2d(t, 2, 1, 0, False, True, 3), [y])
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 3)), [y])
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, 1), [y])


def _t(torch, a):
    return torch.tensor(a, dtype=torch.float32, requires_grad=True)


def _ours(a):
    return pe.tensor(a.astype(np.float32), requires_grad=True)


def test_max_pool2d_torch_grid(torch, rng):
    tf = torch.nn.functional
    for k, s, p, d, size, ceil in itertools.product(
        (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2), (7, 8), (False, True)
    ):
        if p > k // 2 or (size + 2 * p - d * (k - 1) - 1) < 0:
            continue
        x = distinct(rng, (2, 2, size, size + 1))
        w = rng.standard_normal((1,)).item()
        xt, xo = _t(torch, x), _ours(x)
        yt, it = tf.max_pool2d(xt, k, s, p, d, ceil, return_indices=True)
        yo, io = F.max_pool2d(xo, k, s, p, d, ceil, return_indices=True)
        tag = f"k={k} s={s} p={p} d={d} size={size} ceil={ceil}"
        np.testing.assert_array_equal(yo.detach().numpy(), yt.detach().numpy(), err_msg=tag)
        np.testing.assert_array_equal(io.numpy(), it.numpy(), err_msg=tag)
        (yt * w).sum().backward()
        (yo * w).sum().backward()
        np.testing.assert_allclose(
            xo.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=tag
        )


def test_avg_pool2d_torch_grid(torch, rng):
    tf = torch.nn.functional
    for k, s, p, size, ceil, cip, div in itertools.product(
        (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (7, 8), (False, True), (True, False), (None, 3)
    ):
        if p > k // 2 or (div is not None and not cip):
            continue
        x = rng.standard_normal((2, 2, size, size + 1))
        g = rng.standard_normal((1,)).item()
        xt, xo = _t(torch, x), _ours(x)
        yt = tf.avg_pool2d(xt, k, s, p, ceil, cip, div)
        yo = F.avg_pool2d(xo, k, s, p, ceil, cip, div)
        tag = f"k={k} s={s} p={p} size={size} ceil={ceil} cip={cip} div={div}"
        np.testing.assert_allclose(
            yo.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=tag
        )
        (yt * g).sum().backward()
        (yo * g).sum().backward()
        np.testing.assert_allclose(
            xo.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=tag
        )


def test_adaptive_avg_pool2d_torch_grid(torch, rng):
    tf = torch.nn.functional
    for (h, w), out in itertools.product(
        ((7, 7), (8, 5), (1, 1), (13, 10)), (1, (1, 1), (2, 3), (3, 3), (5, 7), (9, 14))
    ):
        x = rng.standard_normal((2, 3, h, w))
        xt, xo = _t(torch, x), _ours(x)
        yt, yo = tf.adaptive_avg_pool2d(xt, out), F.adaptive_avg_pool2d(xo, out)
        np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        yt.sum().backward()
        yo.sum().backward()
        np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ref", [False, True])
def test_max_pool2d_ties_go_to_first_max(ref):
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 5.0  # tie inside the first 2x2 window: (1,0) comes first
    with pe.backend.device.use_reference(ref):
        t = pe.tensor(x, requires_grad=True)
        y, idx = F.max_pool2d(t, 2, return_indices=True)
        y.sum().backward()
    assert idx.numpy()[0, 0].tolist() == [[4, 2], [8, 10]]
    g = np.zeros((4, 4), np.float32)
    g[1, 0] = g[0, 2] = g[2, 0] = g[2, 2] = 1.0
    np.testing.assert_array_equal(t.grad.numpy()[0, 0], g)


@pytest.mark.parametrize("ref", [False, True])
def test_max_pool2d_overlapping_windows_accumulate(ref):
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    with pe.backend.device.use_reference(ref):
        t = pe.tensor(x, requires_grad=True)
        F.max_pool2d(t, 2, stride=1).sum().backward()
    expect = np.zeros((3, 3), np.float32)
    expect[1, 1] = expect[1, 2] = expect[2, 1] = expect[2, 2] = 1
    np.testing.assert_array_equal(t.grad.numpy()[0, 0], expect)


@pytest.mark.parametrize("ref", [False, True])
def test_max_pool2d_padding_is_minus_inf(ref):
    x = -np.ones((1, 1, 3, 3), np.float32) - np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    with pe.backend.device.use_reference(ref):
        y = F.max_pool2d(pe.tensor(x), 2, 2, 1).numpy()
    np.testing.assert_array_equal(y[0, 0], [[-1, -2], [-4, -5]])


@pytest.mark.parametrize("ref", [False, True])
def test_max_pool2d_nan_wins(ref, torch):
    x = np.array([[1, np.nan, 3, 2], [0, 9, np.nan, np.nan]], np.float32).reshape(1, 1, 2, 4)
    yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    with pe.backend.device.use_reference(ref):
        y, i = F.max_pool2d(pe.tensor(x), 2, return_indices=True)
    assert np.isnan(y.numpy()).all()
    np.testing.assert_array_equal(i.numpy(), it.numpy())


@pytest.mark.parametrize("ref", [False, True])
def test_one_by_one_inputs(ref):
    x = np.full((2, 3, 1, 1), 4.0, np.float32)
    with pe.backend.device.use_reference(ref):
        t = pe.tensor(x, requires_grad=True)
        assert F.max_pool2d(t, 1).detach().numpy().tolist() == x.tolist()
        assert F.max_pool2d(t, 2, 2, 1).shape == (2, 3, 1, 1)
        np.testing.assert_array_equal(F.avg_pool2d(t, 2, 2, 1).detach().numpy(), x / 4)
        np.testing.assert_array_equal(
            F.avg_pool2d(t, 2, 2, 1, count_include_pad=False).detach().numpy(), x
        )
        out = F.adaptive_avg_pool2d(t, (2, 3))
        assert out.shape == (2, 3, 2, 3) and (out.detach().numpy() == 4).all()
        out.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), np.full_like(x, 6.0))


def test_global_average_is_plane_mean(rng):
    x = rng.standard_normal((4, 8, 33, 17)).astype(np.float32)
    t = pe.tensor(x, requires_grad=True)
    y = F.adaptive_avg_pool2d(t, 1)
    np.testing.assert_allclose(
        y.detach().numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6
    )
    y.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), np.full_like(x, 1 / (33 * 17)), rtol=1e-6)


def test_modules(rng):
    x = pe.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    m = pe.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)
    y, idx = m(x)
    assert y.shape == (2, 3, 5, 5) and idx.shape == (2, 3, 5, 5)
    assert repr(m) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)"
    a = pe.nn.AvgPool2d(2)
    assert a.stride == 2 and a(x).shape == (2, 3, 4, 4)
    assert repr(a) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    g = pe.nn.AdaptiveAvgPool2d((1, 1))
    assert g(x).shape == (2, 3, 1, 1) and repr(g) == "AdaptiveAvgPool2d(output_size=(1, 1))"


def test_no_grad_saves_nothing(rng):
    x = pe.tensor(rng.standard_normal((1, 1, 4, 4)).astype(np.float32), requires_grad=True)
    with pe.no_grad():
        y = F.max_pool2d(x, 2)
    assert not y.requires_grad


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x: F.max_pool2d(x.reshape(16, 16), 2), ValueError, "3-D .* or 4-D"),
        (lambda x: F.max_pool2d(x.reshape(1, 1, 1, 16, 16), 2), ValueError, "3-D .* or 4-D"),
        (lambda x: F.max_pool2d(x, 17), RuntimeError, "Output size is too small"),
        (lambda x: F.max_pool2d(x, 2, stride=0), ValueError, "stride"),
        (lambda x: F.max_pool2d(x, 2, stride=-1), ValueError, "stride"),
        (lambda x: F.max_pool2d(x, 0), ValueError, "kernel_size"),
        (lambda x: F.max_pool2d(x, 3, padding=2), ValueError, "at most half"),
        (lambda x: F.max_pool2d(x, 2, dilation=0), ValueError, "dilation"),
        (lambda x: F.max_pool2d(x, 2.5), TypeError, "kernel_size"),
        (lambda x: F.max_pool2d(x, (2, 2, 2)), TypeError, "kernel_size"),
        (lambda x: F.avg_pool2d(x, 20, padding=1), RuntimeError, "too small"),
        (lambda x: F.avg_pool2d(x, 2, padding=2), ValueError, "at most half"),
        (lambda x: F.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
        (lambda x: F.adaptive_avg_pool2d(x, (0, 2)), ValueError, "positive"),
        (lambda x: F.adaptive_avg_pool2d(x, (1, 2, 3)), TypeError, "pair"),
        (lambda x: F.max_pool2d(x[:, :, :0], 1), ValueError, "non-empty"),
    ],
)
def test_bad_inputs(call, exc, match):
    x = pe.zeros(1, 1, 16, 16)
    with pytest.raises(exc, match=match):
        call(x)


def test_kernels_reject_bad_arguments():
    k = pe.backend.backend(pe.autograd.Device("cpu")).native
    x = np.zeros((1, 1, 4, 4), np.float32)
    y = np.zeros((1, 1, 2, 2), np.float32)
    idx = np.zeros((1, 1, 2, 2), np.int64)
    with pytest.raises(ValueError, match="expected"):
        k.maxpool2d_forward(
            x, np.zeros((1, 1, 3, 3), np.float32), idx, (2, 2), (2, 2), (0, 0), (1, 1), False
        )
    with pytest.raises(ValueError, match="float32"):
        k.maxpool2d_forward(x.astype(np.float64), y, idx, (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(ValueError, match="stride"):
        k.avgpool2d_forward(x, y, (2, 2), (0, 2), (0, 0), False, True, 0)
    with pytest.raises(ValueError, match="outside"):
        k.maxpool2d_backward(y, np.full((1, 1, 2, 2), 99, np.int64), x.copy())
    with pytest.raises(ValueError, match="does not fit"):
        k.adaptive_avgpool2d_forward(x, np.zeros((1, 2, 1, 1), np.float32))
