"""Issue-13 tensor ops (pyengine/ops/{math,stats,index}.py): float32 C++ kernels against the
float64 NumPy twin (check_op), the twin's gradients by finite differences (gradcheck), and
forward + backward against PyTorch. The new kernels are CPU-only, so no cuda rows."""

import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
from pyengine.autograd import gradcheck

# name -> (fn taking tensors (pyengine or torch), input shapes, input range or None for normal)
OPS = {
    "sin": (lambda x: x.sin(), [(3, 5)], None),
    "cos": (lambda x: x.cos(), [(3, 5)], None),
    "log1p": (lambda x: x.log1p(), [(4, 3)], (-0.5, 2.0)),
    "expm1": (lambda x: x.expm1(), [(4, 3)], None),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), [(5, 6)], None),
    "clamp_min": (lambda x: x.clamp(min=0.1), [(5, 6)], None),
    "clip_max": (lambda x: x.clip(max=0.2), [(5, 6)], None),
    "clamp_tensor_bounds": (lambda x, lo, hi: x.clamp(lo, hi + 1.0), [(3, 4), (4,), (3, 1)], None),
    "norm_inf": (lambda x: x.norm(p=float("inf"), dim=1), [(3, 4)], None),
    "norm_0p5": (lambda x: x.norm(p=0.5), [(3, 4)], None),
    "maximum": (lambda a, b: a.maximum(b), [(3, 4), (4,)], None),
    "minimum": (lambda a, b: a.minimum(b), [(2, 1, 3), (4, 1)], None),
    "remainder": (lambda a, b: a % b, [(3, 4), (4,)], (0.6, 3.0)),
    "abs_builtin": (lambda x: abs(x), [(7,)], None),
    "var_dim": (lambda x: x.var(1), [(4, 6)], None),
    "var_all_corr0": (lambda x: x.var(correction=0), [(3, 5)], None),
    "std_keepdim": (lambda x: x.std(dim=(0, 2), keepdim=True), [(3, 4, 5)], None),
    "std_unbiased_false": (lambda x: x.std(0, unbiased=False), [(6, 2)], None),
    "prod_dim": (lambda x: x.prod(1), [(3, 4)], None),
    "prod_all": (lambda x: x.prod(), [(2, 3)], None),
    "norm_2": (lambda x: x.norm(), [(3, 4)], None),
    "norm_1_dim": (lambda x: x.norm(p=1, dim=1), [(3, 4)], None),
    "norm_3": (lambda x: x.norm(p=3, dim=0, keepdim=True), [(3, 4)], None),
    "min_dim": (lambda x: x.min(1), [(4, 5)], None),
    "min_all": (lambda x: x.min(), [(4, 5)], None),
    "where": (lambda a, b: a.where(a > b, b), [(3, 4), (4,)], None),
    "masked_fill": (lambda x: x.masked_fill(x > 0.3, -2.0), [(4, 5)], None),
    "repeat": (lambda x: x.repeat(2, 1, 3), [(3, 2)], None),
    "expand": (lambda x: x.expand(2, 3, 4), [(3, 1)], None),
    "split": (lambda x: x.split(2, dim=1), [(3, 5)], None),
    "split_sizes": (lambda x: x.split([1, 3], dim=0), [(4, 2)], None),
    "chunk": (lambda x: x.chunk(3, 1), [(2, 7)], None),
    "unbind": (lambda x: x.unbind(1), [(2, 3)], None),
    "flip": (lambda x: x.flip(0, 2), [(2, 3, 4)], None),
    "roll": (lambda x: x.roll(2, 1), [(3, 5)], None),
    "roll_multi": (lambda x: x.roll((1, -2), (0, 1)), [(3, 5)], None),
    "roll_flat": (lambda x: x.roll(4), [(3, 5)], None),
    "sort": (lambda x: x.sort(1), [(4, 6)], None),
    "sort_desc": (lambda x: x.sort(0, descending=True), [(5, 3)], None),
    "topk": (lambda x: x.topk(3, dim=1), [(4, 6)], None),
    "topk_smallest": (lambda x: x.topk(2, dim=0, largest=False), [(4, 6)], None),
    "cumsum": (lambda x: x.cumsum(1), [(3, 6)], None),
    "squeeze_tuple": (lambda x: x.squeeze((0, 2)), [(1, 3, 1, 2)], None),
    "unsqueeze_neg": (lambda x: x.unsqueeze(-1), [(3, 2)], None),
    "mT": (lambda x: x.mT, [(2, 3, 4)], None),
    "matmul_bcast": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)], None),
    "matmul_batch_bcast": (lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], None),
    "matmul_vec": (lambda a, b: a @ b, [(4,), (2, 4, 3)], None),
    "matvec": (lambda a, b: a @ b, [(3, 4), (4,)], None),
}
# Zero-gradient (piecewise-constant) maps: forward only; their gradient is exactly 0.
STEP_OPS = {
    "sign": lambda x: x.sign(),
    "round": lambda x: x.round(),
    "floor": lambda x: x.floor(),
    "ceil": lambda x: x.ceil(),
    "trunc": lambda x: x.trunc(),
    "floor_divide": lambda x: x // 0.7,
}


def _inputs(rng, name):
    _, shapes, rng_range = OPS[name]
    if rng_range is None:
        return [rng.standard_normal(s) for s in shapes]
    return [rng.uniform(*rng_range, s) for s in shapes]


@pytest.mark.parametrize("name", list(OPS))
def test_op_against_twin(rng, name):
    check_op(OPS[name][0], _inputs(rng, name), device="cpu")


@pytest.mark.parametrize("name", list(OPS))
def test_op_gradcheck(rng, name):
    fn = OPS[name][0]
    arrays = _inputs(rng, name)
    if name.startswith(("clamp", "clip")):
        arrays = [a + 0.05 * np.sign(a) for a in arrays]  # keep away from the kinks

    def scalar_out(*ts):
        out = fn(*ts)
        if isinstance(out, tuple):
            out = out[0]
        return out

    ts = [pe.tensor(a, dtype=pe.float64, requires_grad=True) for a in arrays]
    assert gradcheck(scalar_out, ts)


@pytest.mark.parametrize("name", list(OPS))
def test_op_against_torch(torch, rng, name):
    fn = OPS[name][0]
    arrays = _inputs(rng, name)

    def pe_fn(*ts):
        out = fn(*ts)
        return tuple(out) if isinstance(out, tuple) else out

    def torch_fn(*ts):
        out = fn(*ts)
        return tuple(out) if isinstance(out, tuple) else out

    torch_check(torch, pe_fn, arrays, torch_fn, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", list(STEP_OPS))
def test_step_ops_against_torch(torch, name):
    v = np.array([-2.5, -1.5, -0.7, -0.5, -0.0, 0.0, 0.4, 0.5, 1.5, 2.5, 3.49, np.inf, -np.inf])
    v = v.astype(np.float32)
    got = STEP_OPS[name](pe.tensor(v)).numpy()
    ref = STEP_OPS[name](torch.tensor(v)).numpy()
    np.testing.assert_array_equal(got, ref)
    with pe.autograd.detect_anomaly(False):
        x = pe.tensor(v[:11], requires_grad=True)
        if name != "floor_divide":
            STEP_OPS[name](x).sum().backward()
            assert np.all(x.grad.numpy() == 0)


def test_nan_handling_matches_torch(torch):
    v = np.array([np.nan, 1.0, -2.0], np.float32)
    for fn in (
        lambda x: x.sign(),
        lambda x: x.clamp(0, 1),
        lambda x: x.maximum(x * 0),
        lambda x: x.sort().values,
    ):
        np.testing.assert_array_equal(fn(pe.tensor(v)).numpy(), fn(torch.tensor(v)).numpy())


def test_floor_divide_and_remainder_signs_match_torch(torch):
    a = np.array([7.0, -7.0, 7.0, -7.0, 0.5, -0.5, 6.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 0.25, 3.0, 3.0], np.float32)
    for fn in (lambda x, y: x // y, lambda x, y: x % y):
        np.testing.assert_array_equal(
            fn(pe.tensor(a), pe.tensor(b)).numpy(), fn(torch.tensor(a), torch.tensor(b)).numpy()
        )
    ia, ib = np.array([7, -7, 5]), np.array([2, 2, -3])
    assert (pe.tensor(ia) // pe.tensor(ib)).tolist() == (
        torch.tensor(ia) // torch.tensor(ib)
    ).tolist()
    assert (pe.tensor(ia) % 3).tolist() == (torch.tensor(ia) % 3).tolist()
    with pytest.raises(RuntimeError, match="ZeroDivision"):
        pe.tensor([1]) // pe.tensor([0])


def test_integer_and_bool_forms(torch):
    t = np.array([[3, -1, 2], [0, 5, -4]])
    for fn in (
        lambda x: x.min(1).values,
        lambda x: x.argmin(1),
        lambda x: x.argmax(),
        lambda x: x.flip(1),
        lambda x: x.roll(1, 0),
        lambda x: x.cumsum(1),
        lambda x: x.sort(1).values,
        lambda x: x.clamp(-1, 2),
        lambda x: x.prod(1),
        lambda x: x.any(1),
        lambda x: x.all(),
        lambda x: (x > 0).any(),
        lambda x: x.repeat(2, 1),
    ):
        np.testing.assert_array_equal(fn(pe.tensor(t)).numpy(), fn(torch.tensor(t)).numpy())


def test_argmin_argmax_ties_pick_first(torch):
    v = np.array([[1.0, 0.0, 0.0, 3.0, 3.0]], np.float32)
    for name in ("argmin", "argmax"):
        for kw in ({}, {"dim": 1}, {"dim": 1, "keepdim": True}):
            got = getattr(pe.tensor(v), name)(**kw)
            ref = getattr(torch.tensor(v), name)(**kw)
            assert got.tolist() == ref.tolist() and got.shape == tuple(ref.shape)


@pytest.mark.filterwarnings("ignore:var")
def test_var_edge_cases_match_torch(torch):
    one = np.array([2.0], np.float32)
    assert np.isnan(pe.tensor(one).var().item()) and np.isnan(torch.tensor(one).var().item())
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    for kw in ({"correction": 2}, {"unbiased": False}, {"dim": 0, "correction": 0}):
        np.testing.assert_allclose(
            pe.tensor(v).var(**kw).numpy(), torch.tensor(v).var(**kw).numpy(), rtol=1e-6
        )


def test_prod_with_zeros_gradient(torch):
    v = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 1.0], [1.0, 2.0, 4.0]])
    torch_check(torch, lambda x: x.prod(1), [v])


def test_bad_arguments_raise():
    x = pe.randn(3, 4)
    with pytest.raises(RuntimeError, match="min.*max"):
        x.clamp()
    with pytest.raises(RuntimeError, match="split_sizes"):
        x.split([1, 1], dim=0)
    with pytest.raises(RuntimeError, match="out of range"):
        x.topk(5)
    with pytest.raises(RuntimeError, match="repeat"):
        x.repeat(2)
    with pytest.raises(TypeError, match="bool"):
        x.masked_fill(x, 0.0)
    with pytest.raises(IndexError):
        x.flip(2)
    with pytest.raises(RuntimeError, match="chunks"):
        x.chunk(0)


@pytest.mark.parametrize(
    "sc,sa,sb",
    [
        ((3, 4), (3, 4), (3, 4)),
        ((4,), (3, 1), ()),
        ((2, 1, 5), (1, 3, 1), (5,)),
        ((), (2, 3), (2, 3)),
        ((0, 3), (3,), (1,)),
        ((64, 1024), (64, 1024), (1024,)),  # long enough for the threaded path
    ],
)
def test_where_kernel_against_twin(rng, sc, sa, sb):
    from pyengine.backend import numpy_ref
    from pyengine.backend.device import _cpu

    c = np.asarray(rng.random(sc) > 0.5)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    shape = np.broadcast_shapes(sc, sa, sb)
    got, ref = np.empty(shape, np.float32), np.empty(shape, np.float32)
    _cpu.where_forward(c, a, b, got)
    numpy_ref.where_forward(c, a, b, ref)
    np.testing.assert_array_equal(got, ref)


def test_where_kernel_rejects_bad_operands():
    from pyengine.backend.device import _cpu

    out = np.empty(3, np.float32)
    with pytest.raises(ValueError, match="bool"):
        _cpu.where_forward(np.ones(3, np.int64), np.ones(3, np.float32), out, out)
    with pytest.raises(ValueError, match="broadcast"):
        _cpu.where_forward(np.ones(4, bool), np.ones(3, np.float32), out, out)
    with pytest.raises(ValueError, match="broadcast"):
        pe.where(pe.ones(4) > 0, pe.ones(3), pe.ones(3))


def test_edge_forms_match_torch(torch):
    cases = [
        lambda lib: lib.where(lib.tensor([True, False]), 1.0, 0.0),
        lambda lib: lib.where(lib.tensor([True, False]), 1, 0),
        lambda lib: lib.tensor(1.5).flip(0),
        lambda lib: lib.zeros(0).prod(),
        lambda lib: lib.zeros(0).norm(),
        lambda lib: lib.tensor(2.0).cumsum(0),
        lambda lib: lib.arange(5.0).topk(0).values,
        lambda lib: lib.ones(2).repeat(0),
        lambda lib: lib.tensor(3.0).sort().values,
    ]
    for f in cases:
        got, ref = f(pe), f(torch)
        assert got.shape == tuple(ref.shape) and got.tolist() == ref.tolist()
        assert str(got.dtype) == str(ref.dtype).replace("torch.", "")
