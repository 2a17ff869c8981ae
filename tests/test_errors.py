"""Bad input gives a clear Python exception naming the shapes or the problem, never a crash."""

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.backend.device import _cpu

f32 = np.float32


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype)


def test_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        pe.ones(2, 3) + pe.ones(4)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        pe.ones(3, 4) @ pe.ones(5, 6)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        F.mse_loss(pe.ones(2, 3), pe.ones(3, 2))
    with pytest.raises(ValueError, match="batch size"):
        F.cross_entropy(pe.ones(4, 3), pe.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.cross_entropy(pe.ones(4), pe.tensor([0]))


def test_wrong_dtypes():
    assert (pe.ones(2) + pe.ones(2, dtype=pe.float64)).dtype == pe.float64  # promotes, as torch
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(pe.ones(2, 3), pe.tensor([0.0, 1.0]))
    with pytest.raises(TypeError):
        pe.tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError):
        pe.tensor(["a"])
    with pytest.raises(TypeError, match="unsupported dtype"):
        pe.zeros(2, dtype=np.complex64)
    with pytest.raises(RuntimeError, match="floating"):
        pe.tensor([1, 2], requires_grad=True)


def test_target_out_of_range():
    with pytest.raises(ValueError, match="out of bounds"):
        F.cross_entropy(pe.ones(2, 3), pe.tensor([0, 3]))
    with pytest.raises(ValueError, match="out of bounds"):
        F.cross_entropy(pe.ones(2, 3), pe.tensor([-1, 0]))


def test_numpy_input_that_cannot_be_shared():
    a = np.arange(12, dtype=f32).reshape(3, 4)
    with pytest.raises(ValueError, match="C-contiguous"):
        pe.from_numpy(a.T)
    ro = a.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        pe.from_numpy(ro)
    with pytest.raises(TypeError):
        pe.from_numpy([1.0, 2.0])
    # pe.tensor copies, so the same arrays are fine there
    assert pe.tensor(a.T).shape == (4, 3) and pe.tensor(ro).sum().item() == a.sum()
    assert pe.tensor(a[:, ::2]).tolist() == a[:, ::2].tolist()


def test_empty_tensors():
    e = pe.zeros(0, 3, requires_grad=True)
    assert (e * 2).shape == (0, 3) and e.sum().item() == 0.0
    with pytest.raises(RuntimeError, match="empty"):
        pe.zeros(0).max()
    with pytest.raises(RuntimeError, match="empty"):
        e.mean()
    (e * 2).sum().backward()
    assert e.grad.shape == (0, 3)
    assert F.softmax(pe.zeros(0, 4), 1).shape == (0, 4)
    assert (pe.zeros(0, 4) @ pe.zeros(4, 2)).shape == (0, 2)


def test_nan_inf_inputs_propagate_without_crashing():
    x = pe.tensor([[float("nan"), float("inf"), -float("inf"), 1.0]], requires_grad=True)
    for fn in (
        lambda t: t.exp(),
        lambda t: t.sigmoid(),
        lambda t: F.softmax(t, 1),
        lambda t: F.log_softmax(t, 1),
        lambda t: t @ pe.ones(4, 2),
        lambda t: t.max(1).values,
    ):
        fn(x).sum().backward()
    assert x.grad.shape == (1, 4)
    with pe.autograd.detect_anomaly(), pytest.raises(RuntimeError, match="NaN or inf"):
        x * 2


def test_mixed_and_unavailable_devices():
    if pe.cuda.is_available():
        with pytest.raises(RuntimeError, match="same device"):
            pe.ones(2) + pe.ones(2).cuda()
    else:
        with pytest.raises(RuntimeError, match="cuda"):
            pe.ones(2).to("cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            pe.zeros(2, device="cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            pe.nn.Linear(2, 2).cuda()
    with pytest.raises(ValueError, match="unknown device"):
        pe.ones(2).to("tpu")


def test_backward_without_gradient_on_non_scalar():
    y = pe.ones(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()


# ---------------------------------------------------------------- the C++ layer checks arguments
CPP_BAD = [
    ("dtype", lambda: _cpu.unary_forward("relu", z(4, dtype=np.float64), z(4))),
    ("dtype", lambda: _cpu.binary_forward("add", z(4), z(4), z(4, dtype=np.int32))),
    ("C-contiguous", lambda: _cpu.unary_forward("exp", z(4, 4)[:, ::2], z(4, 2))),
    ("C-contiguous", lambda: _cpu.axpby(z(4), z(4, 2)[:, 0], 1.0, 1.0)),
    ("writeable", lambda: _cpu.unary_forward("exp", z(4), _readonly(z(4)))),
    (
        "writeable",
        lambda: _cpu.sgd_step(_readonly(z(3)), z(3), z(3), 0.1, 0.0, 0.0, 0.0, False, True),
    ),
    ("same number", lambda: _cpu.unary_forward("exp", z(4), z(5))),
    ("same number", lambda: _cpu.unary_backward("relu", z(4), z(4), z(3))),
    ("same number", lambda: _cpu.axpby(z(4), z(8), 1.0, 1.0)),
    ("broadcast", lambda: _cpu.binary_forward("add", z(3), z(4), z(4))),
    ("more dimensions", lambda: _cpu.binary_forward("mul", z(2, 3), z(3), z(3))),
    ("unknown", lambda: _cpu.binary_forward("xor", z(3), z(3), z(3))),
    ("unknown", lambda: _cpu.unary_forward("gelu", z(3), z(3))),
    ("sum_reduce", lambda: _cpu.sum_reduce(z(3, 4), z(2, 1))),
    ("sum_reduce", lambda: _cpu.sum_reduce(z(3, 4), z(4))),
    ("sizes", lambda: _cpu.max_reduce(z(3, 4), z(3), z(3, dtype=np.int64), 3, 5, 1)),
    ("int64", lambda: _cpu.max_reduce(z(3, 4), z(3), z(3, dtype=np.int32), 3, 4, 1)),
    ("empty", lambda: _cpu.max_reduce(z(3, 4), z(3), z(3, dtype=np.int64), 3, 0, 1)),
    ("sizes", lambda: _cpu.max_reduce_backward(z(3), z(3, dtype=np.int64), z(3, 5), 3, 4, 1)),
    ("sizes", lambda: _cpu.softmax_forward(z(3, 4), z(3, 4), 3, 5, 1, False)),
    ("sizes", lambda: _cpu.softmax_backward(z(3, 4), z(3, 4), z(3, 3), 3, 4, 1, True)),
    ("out of bounds", lambda: _cpu.nll_forward(z(2, 3), np.array([0, 7]), z(2))),
    ("target", lambda: _cpu.nll_forward(z(2, 3), np.array([0, 1, 2]), z(2))),
    ("2-D", lambda: _cpu.nll_backward(z(2), np.array([0, 1]), z(2))),
    ("shape mismatch", lambda: _cpu.gemm(z(3, 4), z(5, 6), z(3, 6))),
    ("shape", lambda: _cpu.gemm(z(3, 4), z(4, 6), z(3, 5))),
    ("2-D", lambda: _cpu.gemm(z(3, 4, 1), z(4, 6), z(3, 6))),
    ("float32", lambda: _cpu.gemm(z(3, 4, dtype=np.float64), z(4, 6), z(3, 6))),
    ("writeable", lambda: _cpu.gemm(z(3, 4), z(4, 6), _readonly(z(3, 6)))),
    ("same number", lambda: _cpu.adam_step(z(3), z(4), z(3), z(3), 0.1, 0.9, 0.99, 1e-8, 0.0, 1)),
    ("step", lambda: _cpu.adam_step(z(3), z(3), z(3), z(3), 0.1, 0.9, 0.99, 1e-8, 0.0, 0)),
    ("momentum_buffer", lambda: _cpu.sgd_step(z(3), z(3), z(2), 0.1, 0.9, 0.0, 0.0, False, True)),
]


def _readonly(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "match,call", CPP_BAD, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CPP_BAD)]
)
def test_cpp_kernels_validate_arguments(match, call):
    with pytest.raises(ValueError, match=match):
        call()


def test_cpp_kernels_reject_non_arrays():
    with pytest.raises(TypeError):
        _cpu.unary_forward("relu", [1.0, 2.0], z(2))
