"""nn API of issue 13 outside the kernel families: Embedding, one_hot, containers, Identity,
Upsample, Conv2d padding modes (and F.pad circular), nn.utils gradient clipping and parameter
vectors; each against PyTorch."""

import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F


def test_embedding_against_torch(torch, rng):
    w = rng.standard_normal((10, 4)).astype(np.float32)
    idx = np.array([[1, 3, 3], [0, 9, -1]], np.int64)
    torch_check(
        torch,
        lambda w, i: F.embedding(i, w),
        [w, idx % 10],
        lambda w, i: torch.nn.functional.embedding(i, w),
    )
    torch_check(
        torch,
        lambda w, i: F.embedding(i, w, padding_idx=3),
        [w, idx % 10],
        lambda w, i: torch.nn.functional.embedding(i, w, padding_idx=3),
    )
    check_op(lambda w, i: F.embedding(i, w, padding_idx=0), [w.astype(np.float64), idx % 10])
    pe.manual_seed(0)
    m = nn.Embedding(10, 4, padding_idx=2)
    assert m.weight.shape == (10, 4) and np.all(m.weight.detach().numpy()[2] == 0)
    assert m(pe.tensor(idx % 10)).shape == (2, 3, 4)
    ref = torch.nn.Embedding(10, 4, padding_idx=2)
    assert list(m.state_dict()) == list(ref.state_dict())
    f = nn.Embedding.from_pretrained(pe.tensor(w))
    assert not f.weight.requires_grad and np.array_equal(f(pe.tensor([4])).numpy()[0], w[4])
    with pytest.raises(IndexError, match="out of range"):
        m(pe.tensor([10]))
    with pytest.raises(TypeError, match="integer"):
        m(pe.tensor([1.0]))


def test_one_hot(torch):
    x = np.array([[0, 2], [1, 4]])
    for nc in (-1, 6):
        ours = F.one_hot(pe.tensor(x), nc)
        ref = torch.nn.functional.one_hot(torch.tensor(x), nc)
        assert ours.dtype == pe.int64 and np.array_equal(ours.numpy(), ref.numpy())
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(pe.tensor([3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(pe.tensor([-1]))
    with pytest.raises(RuntimeError, match="index tensor"):
        F.one_hot(pe.tensor([1.0]))


def test_containers_and_identity():
    a, b = nn.Linear(2, 3), nn.ReLU()
    d = nn.ModuleDict({"fc": a, "act": b})
    assert list(d) == ["fc", "act"] and d["fc"] is a and "act" in d and len(d) == 2
    assert [n for n, _ in d.named_parameters()] == ["fc.weight", "fc.bias"]
    d["out"] = nn.Linear(3, 1)
    d.update([("act", nn.Tanh())])
    assert list(d.keys()) == ["fc", "act", "out"] and isinstance(d["act"], nn.Tanh)
    del d["out"]
    assert d.pop("act") is not None and list(d) == ["fc"]
    with pytest.raises(TypeError):
        d["x"] = 3
    ml = nn.ModuleList([a])
    ml.extend([b, nn.Identity()])
    ml.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Tanh", "Linear", "ReLU", "Identity"]
    assert len(ml[1:]) == 3 and isinstance(ml[-1], nn.Identity)
    del ml[0]
    ml[0] = nn.Sigmoid()
    assert [type(m).__name__ for m in ml] == ["Sigmoid", "ReLU", "Identity"]
    x = pe.ones(2)
    assert nn.Identity(3, k=1)(x) is x


@pytest.mark.parametrize(
    "kw",
    [
        dict(scale_factor=2),
        dict(size=(5, 7)),
        dict(scale_factor=2, mode="bilinear"),
        dict(scale_factor=1.5, mode="bilinear", align_corners=True),
    ],
)
def test_upsample_against_torch(torch, rng, kw):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    torch_check(torch, nn.Upsample(**kw), [x], torch.nn.Upsample(**kw))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
@pytest.mark.parametrize(
    "kw", [dict(padding=1), dict(padding=(2, 1), stride=2), dict(padding="same", dilation=2)]
)
def test_conv2d_padding_modes_against_torch(torch, rng, mode, kw):
    ours = nn.Conv2d(3, 4, 3, padding_mode=mode, **kw)
    ref = torch.nn.Conv2d(3, 4, 3, padding_mode=mode, **kw)
    ref.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    torch_check(torch, ours, [x], ref, atol=1e-4, rtol=1e-4)
    assert repr(ours).replace("pyengine.", "") == repr(ref).replace("torch.", "") or mode == "zeros"


def test_pad_circular(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    torch_check(
        torch,
        lambda x: F.pad(x, (1, 2, 3, 0), mode="circular"),
        [x.astype(np.float32)],
        lambda x: torch.nn.functional.pad(x, (1, 2, 3, 0), mode="circular"),
    )
    xs = pe.tensor(x[:1, :1], dtype=pe.float64, requires_grad=True)
    assert pe.autograd.gradcheck(lambda x: F.pad(x, (2, 1, 1, 1), mode="circular"), [xs])
    with pytest.raises(ValueError, match="wrapping"):
        F.pad(pe.tensor(x), (6, 0), mode="circular")
    with pytest.raises(ValueError, match="zeros"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


def _with_grads(lib, rng, scale):
    ps = [
        lib.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        for s in [(3, 4), (5,), (2, 2, 2)]
    ]
    for p in ps:
        p.grad = lib.tensor(rng.standard_normal(p.shape).astype(np.float32) * scale)
    return ps


@pytest.mark.parametrize(
    "max_norm,norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, 1.0), (0.5, float("inf")), (2.0, 3.0)]
)
def test_clip_grad_norm_against_torch(torch, max_norm, norm_type):
    ours = _with_grads(pe, np.random.default_rng(0), 3.0)
    ref = _with_grads(torch, np.random.default_rng(0), 3.0)
    n1 = pe.nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    assert n1.item() == pytest.approx(n2.item(), rel=1e-5)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_value_and_vectors(torch):
    ours = _with_grads(pe, np.random.default_rng(1), 2.0)
    ref = _with_grads(torch, np.random.default_rng(1), 2.0)
    pe.nn.utils.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(ref, 0.7)
    for a, b in zip(ours, ref):
        assert np.array_equal(a.grad.numpy(), b.grad.numpy())
    v = pe.nn.utils.parameters_to_vector(ours)
    vt = torch.nn.utils.parameters_to_vector(ref)
    assert np.array_equal(v.detach().numpy(), vt.detach().numpy())
    (v * pe.arange(v.shape[0]).float()).sum().backward()
    assert ours[1].grad is not None
    new = np.arange(v.shape[0], dtype=np.float32)
    pe.nn.utils.vector_to_parameters(pe.tensor(new), ours)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), ref)
    for a, b in zip(ours, ref):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    with pytest.raises(RuntimeError, match="expected a 1-D vector"):
        pe.nn.utils.vector_to_parameters(pe.ones(3), ours)
    p = pe.nn.Parameter(pe.ones(2))
    p.grad = pe.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        pe.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_log_softmax_unflatten_nll_against_torch(torch, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    torch_check(torch, nn.LogSoftmax(dim=1), [x], torch.nn.LogSoftmax(dim=1))
    torch_check(torch, nn.Unflatten(1, (2, 3)), [x], torch.nn.Unflatten(1, (2, 3)))
    target = np.array([0, 5, 2, 2])
    for red in ("mean", "sum", "none"):
        torch_check(
            torch,
            lambda x, t, red=red: nn.NLLLoss(reduction=red)(F.log_softmax(x, 1), t),
            [x, target],
            lambda x, t, red=red: torch.nn.NLLLoss(reduction=red)(
                torch.nn.functional.log_softmax(x, 1), t
            ),
        )
    with pytest.raises(NotImplementedError, match="weight"):
        nn.NLLLoss(weight=pe.ones(6))
