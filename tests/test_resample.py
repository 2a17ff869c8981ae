import itertools

import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck

UP_ROWS = [
    # shape, size, scale_factor, mode, align_corners
    ((2, 3, 5, 7), None, 2, "nearest", None),
    ((2, 3, 5, 7), None, 1.5, "nearest", None),
    ((2, 3, 8, 6), None, 0.5, "nearest", None),
    ((1, 2, 5, 7), (9, 4), None, "nearest", None),
    ((2, 3, 5, 7), None, 2, "bilinear", False),
    ((2, 3, 5, 7), None, (1.5, 0.75), "bilinear", True),
    ((1, 2, 8, 6), (3, 11), None, "bilinear", False),
    ((1, 2, 8, 6), (3, 11), None, "bilinear", True),
    ((1, 2, 1, 1), (4, 3), None, "bilinear", False),
]


@pytest.mark.parametrize("shape,size,scale,mode,align", UP_ROWS)
def test_interpolate_against_twin(device, rng, shape, size, scale, mode, align):
    x = rng.standard_normal(shape)
    check_op(lambda t: F.interpolate(t, size, scale, mode, align), [x], device=device)


PAD_ROWS = [
    # shape, pad, mode, value
    ((2, 3, 5, 6), (1, 2, 3, 0), "constant", 0.0),
    ((2, 3, 5, 6), (2, 1), "constant", -1.5),
    ((1, 2, 5, 6), (-1, 2, 0, -2), "constant", 0.5),
    ((2, 3, 5, 6), (4, 2, 3, 4), "reflect", None),
    ((2, 3, 5, 6), (-1, 2, 1, -2), "reflect", None),
    ((2, 3, 5, 6), (3, 7, 6, 1), "replicate", None),
    ((3, 5, 6), (1, 1, 2, 2), "replicate", None),
]


@pytest.mark.parametrize("shape,pad,mode,value", PAD_ROWS)
def test_pad_against_twin(device, rng, shape, pad, mode, value):
    x = rng.standard_normal(shape)
    check_op(lambda t: F.pad(t, pad, mode, value), [x], device=device)


def test_gradcheck_twins(rng):
    x = pe.tensor(rng.standard_normal((1, 2, 3, 4)), dtype="float64", requires_grad=True)
    assert gradcheck(lambda t: F.interpolate(t, scale_factor=1.5, mode="nearest"), [x])
    assert gradcheck(lambda t: F.interpolate(t, size=(5, 3), mode="bilinear"), [x])
    assert gradcheck(
        lambda t: F.interpolate(t, size=(4, 7), mode="bilinear", align_corners=True), [x]
    )
    assert gradcheck(lambda t: F.pad(t, (2, 1, -1, 2), value=0.5), [x])
    assert gradcheck(lambda t: F.pad(t, (3, 2, 2, 1), mode="reflect"), [x])
    assert gradcheck(lambda t: F.pad(t, (3, 2, 2, 4), mode="replicate"), [x])


def _pair(torch, a):
    return (
        torch.tensor(a, dtype=torch.float32, requires_grad=True),
        pe.tensor(a.astype(np.float32), requires_grad=True),
    )


def test_interpolate_torch_grid(torch, rng):
    tf = torch.nn.functional
    sizes = [
        (None, 2),
        (None, 1.5),
        (None, 0.5),
        (None, (2, 0.75)),
        (None, 3),
        ((5, 9), None),
        ((3, 3), None),
        (7, None),
        (1, None),
    ]
    modes = [("nearest", None), ("bilinear", False), ("bilinear", True)]
    for (h, w), (size, scale), (mode, align) in itertools.product(
        ((5, 7), (8, 8), (1, 1), (2, 3)), sizes, modes
    ):
        if scale is not None and min(np.floor(np.multiply((h, w), scale))) < 1:
            continue
        x = rng.standard_normal((2, 2, h, w))
        xt, xo = _pair(torch, x)
        yt = tf.interpolate(xt, size, scale, mode, align)
        yo = F.interpolate(xo, size, scale, mode, align)
        tag = f"in={h}x{w} size={size} scale={scale} mode={mode} align={align}"
        exact = mode == "nearest"
        np.testing.assert_allclose(
            yo.detach().numpy(),
            yt.detach().numpy(),
            rtol=0 if exact else 1e-5,
            atol=0 if exact else 1e-5,
            err_msg=tag,
        )
        g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
        yt.backward(torch.tensor(g))
        yo.backward(pe.tensor(g))
        np.testing.assert_allclose(
            xo.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=tag
        )


def test_pad_torch_grid(torch, rng):
    tf = torch.nn.functional
    pads = [(1, 1, 1, 1), (0, 3, 2, 0), (4, 0, 0, 4), (-1, 2, 3, -2), (2, 1), (0, 0, 0, 0)]
    for pad, mode, (h, w) in itertools.product(
        pads, ("constant", "reflect", "replicate"), ((5, 6), (6, 5))
    ):
        x = rng.standard_normal((2, 3, h, w))
        if mode != "constant" and len(pad) == 2:
            continue
        xt, xo = _pair(torch, x)
        value = 0.25 if mode == "constant" else None
        yt = tf.pad(xt, pad, mode=mode, value=value)
        yo = F.pad(xo, pad, mode=mode, value=value)
        np.testing.assert_array_equal(yo.detach().numpy(), yt.detach().numpy(), err_msg=f"{pad}")
        g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
        yt.backward(torch.tensor(g))
        yo.backward(pe.tensor(g))
        np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ref", [False, True])
def test_exact_small_cases(ref):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    with pe.backend.device.use_reference(ref):
        t = pe.tensor(x)
        near = F.interpolate(t, scale_factor=2).numpy()[0, 0]
        assert near.tolist() == np.repeat(np.repeat(x[0, 0], 2, 0), 2, 1).tolist()
        corners = F.interpolate(t, size=(3, 5), mode="bilinear", align_corners=True).numpy()
        np.testing.assert_allclose(
            corners[0, 0],
            [[0, 0.5, 1, 1.5, 2], [1.5, 2, 2.5, 3, 3.5], [3, 3.5, 4, 4.5, 5]],
            atol=1e-6,
        )
        refl = F.pad(t, (2, 1, 1, 0), mode="reflect").numpy()[0, 0]
        assert refl.tolist() == [[5, 4, 3, 4, 5, 4], [2, 1, 0, 1, 2, 1], [5, 4, 3, 4, 5, 4]]
        rep = F.pad(t, (1, 0, 0, 1), mode="replicate").numpy()[0, 0]
        assert rep.tolist() == [[0, 0, 1, 2], [3, 3, 4, 5], [3, 3, 4, 5]]
        crop = F.pad(t, (-1, 0, 0, -1), value=7).numpy()[0, 0]
        assert crop.tolist() == [[1, 2]]
        one = F.interpolate(
            pe.tensor(np.full((1, 1, 1, 1), 3, np.float32)), size=(2, 4), mode="bilinear"
        ).numpy()
        assert (one == 3).all()


def test_upsample_module():
    m = pe.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    assert repr(m) == "Upsample(scale_factor=2.0, mode='bilinear')"
    assert m(pe.zeros(1, 2, 3, 4)).shape == (1, 2, 6, 8)
    s = pe.nn.Upsample(size=(5, 5))
    assert repr(s) == "Upsample(size=(5, 5), mode='nearest')"
    assert s(pe.zeros(1, 2, 3, 4)).shape == (1, 2, 5, 5)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x: F.interpolate(x, size=3, scale_factor=2), ValueError, "only one of"),
        (lambda x: F.interpolate(x), ValueError, "either size or scale_factor"),
        (lambda x: F.interpolate(x, size=3, align_corners=True), ValueError, "align_corners"),
        (lambda x: F.interpolate(x, scale_factor=0.1), RuntimeError, "greater than 0"),
        (lambda x: F.interpolate(x, scale_factor=-2), ValueError, "positive"),
        (lambda x: F.interpolate(x, size=(2, 2, 2)), ValueError, "size"),
        (lambda x: F.interpolate(x, size=3, mode="bicubic"), NotImplementedError, "bicubic"),
        (lambda x: F.interpolate(x.reshape(4, 4), size=3), ValueError, "4-D"),
        (lambda x: F.pad(x, (4, 0, 0, 0), mode="reflect"), ValueError, "less than"),
        (lambda x: F.pad(x, (0, 0, 0, 5), mode="reflect"), ValueError, "less than"),
        (lambda x: F.pad(x, (1, 1, 1)), ValueError, "divisible by 2"),
        (lambda x: F.pad(x, (1, 1, 1, 1, 1, 1)), ValueError, "2 or 4"),
        (lambda x: F.pad(x, (-3, -2)), RuntimeError, "negative output"),
        (lambda x: F.pad(x, (5, 1), mode="circular"), ValueError, "wrapping"),
        (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect", value=1.0), ValueError, "value"),
        (lambda x: F.pad(x.reshape(16), (1, 1)), ValueError, "3-D or 4-D"),
    ],
)
def test_bad_inputs(call, exc, match):
    x = pe.zeros(1, 1, 4, 4)
    with pytest.raises(exc, match=match):
        call(x)


def test_kernels_reject_bad_arguments():
    k = pe.backend.backend(pe.autograd.Device("cpu")).native
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="expected"):
        k.pad2d_forward(x, np.zeros((1, 1, 5, 5), np.float32), (1, 1, 1, 1), "constant", 0.0)
    with pytest.raises(ValueError, match="smaller than"):
        k.pad2d_forward(x, np.zeros((1, 1, 4, 12), np.float32), (4, 4, 0, 0), "reflect", 0.0)
    with pytest.raises(ValueError, match="unknown padding mode"):
        k.pad2d_forward(x, x.copy(), (0, 0, 0, 0), "circular", 0.0)
    with pytest.raises(ValueError, match="differ in batch"):
        k.upsample_nearest2d_forward(x, np.zeros((2, 1, 8, 8), np.float32), 0.0, 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        k.upsample_bilinear2d_forward(x, np.zeros((1, 1, 0, 8), np.float32), False, 0.0, 0.0)
