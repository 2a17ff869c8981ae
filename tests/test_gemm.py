import numpy as np
import pytest
from opcheck import check_op
from pyrun import run_python
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck
from pyengine.backend import numpy_ref
from pyengine.backend.device import _cpu

SIZES = [
    (1, 1, 1),
    (7, 1, 33),
    (1, 7, 5),
    (33, 7, 1),
    (7, 33, 257),
    (64, 64, 64),
    (257, 33, 7),
    (100, 129, 65),
    (257, 257, 257),
]


def _operands(rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def _reference(a, b, c0, ta, tb, alpha, beta):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    r = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64))
    return r + beta * c0.astype(np.float64) if beta else r


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("m,n,k", SIZES)
def test_gemm_kernel_against_float64(rng, ta, tb, m, n, k):
    a, b = _operands(rng, m, n, k, ta, tb)
    for alpha, beta in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)]:
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        c = c0.copy()
        _cpu.gemm(a, b, c, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta)
        ref = _reference(a, b, c0, ta, tb, alpha, beta)
        scale = np.sqrt(k) * max(abs(alpha), 1.0) + abs(beta)
        np.testing.assert_allclose(c, ref, atol=2e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_gemm_twin_matches_kernel(rng, ta, tb):
    a, b = _operands(rng, 9, 11, 13, ta, tb)
    c0 = rng.standard_normal((9, 11)).astype(np.float32)
    c1, c2 = c0.copy(), c0.copy()
    _cpu.gemm(a, b, c1, ta, tb, 1.5, 0.5)
    numpy_ref.gemm(a, b, c2, ta, tb, 1.5, 0.5)
    np.testing.assert_allclose(c1, c2, atol=1e-4, rtol=1e-4)


def test_gemm_beta_zero_ignores_nan_in_c(rng):
    a, b = _operands(rng, 4, 5, 6, False, False)
    c = np.full((4, 5), np.nan, np.float32)
    _cpu.gemm(a, b, c)
    assert np.all(np.isfinite(c))


def test_gemm_empty_inner_dimension():
    a, b = np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32)
    c = np.ones((3, 4), np.float32)
    _cpu.gemm(a, b, c, alpha=1.0, beta=2.0)
    np.testing.assert_array_equal(c, 2.0)


MATMUL = [
    ((3, 4), (4, 5)),
    ((1, 1), (1, 1)),
    ((7, 33), (33, 1)),
    ((2, 3, 4), (2, 4, 5)),
    ((1, 257, 7), (1, 7, 3)),
    ((65, 130), (130, 33)),
]


@pytest.mark.parametrize("sa,sb", MATMUL)
def test_matmul_against_twin(device, rng, sa, sb):
    check_op(lambda a, b: a @ b, [rng.standard_normal(sa), rng.standard_normal(sb)], device=device)


@pytest.mark.parametrize("sa,sb", MATMUL)
def test_matmul_against_torch(torch, rng, sa, sb):
    torch_check(
        torch,
        lambda a, b: a @ b,
        [rng.standard_normal(sa), rng.standard_normal(sb)],
        atol=1e-4,
        rtol=1e-4,
    )


def test_matmul_gradcheck(rng):
    a = pe.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = pe.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    assert gradcheck(lambda a, b: a @ b, [a, b])
    a3 = pe.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b3 = pe.tensor(rng.standard_normal((2, 4, 2)), requires_grad=True)
    assert gradcheck(pe.matmul, [a3, b3])


LINEAR = [
    ((5, 3), (4, 3), True),
    ((5, 3), (4, 3), False),
    ((3,), (2, 3), True),
    ((2, 3, 6), (4, 6), True),
    ((1, 1), (1, 1), True),
    ((64, 100), (33, 100), True),
]


@pytest.mark.parametrize("sx,sw,bias", LINEAR)
def test_linear(device, torch, rng, sx, sw, bias):
    args = [rng.standard_normal(sx), rng.standard_normal(sw)]
    if bias:
        args.append(rng.standard_normal(sw[0]))
    check_op(F.linear, args, device=device)
    torch_check(torch, F.linear, args, torch.nn.functional.linear, atol=1e-4, rtol=1e-4)
    small = [pe.tensor(a[..., :2], requires_grad=True) for a in args[:2]]
    if bias:
        small.append(pe.tensor(args[2], requires_grad=True))
    if sx[-1] >= 2:
        assert gradcheck(F.linear, small)


def test_linear_skips_unneeded_gradients(rng):
    x = pe.tensor(rng.standard_normal((4, 3)))
    w = pe.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    F.linear(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (2, 3)


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3, 4), (5, 6)),
        ((3,), (4,)),
        ((2, 3, 4), (3, 4, 5)),
        ((2, 3, 4), (5, 6)),
        ((3, 4), (2, 5, 6)),
    ],
)
def test_matmul_shape_errors_name_shapes(sa, sb):
    with pytest.raises(ValueError, match=r"\(.*\)"):
        pe.randn(*sa) @ pe.randn(*sb)


def test_linear_shape_errors():
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        F.linear(pe.randn(4, 3), pe.randn(2, 5))
    with pytest.raises(ValueError, match="bias"):
        F.linear(pe.randn(4, 3), pe.randn(2, 3), pe.randn(3))


@pytest.mark.parametrize("kernel", ["avx2", "scalar"])
def test_fallback_micro_kernels(kernel):
    """The AVX2 and portable kernels (picked on older CPUs) agree with NumPy on awkward sizes."""
    code = (
        "import numpy as np, pyengine as pe\n"
        "from pyengine.backend.device import _cpu\n"
        f"assert _cpu.gemm_kernel_name().startswith('{kernel}')\n"
        "r = np.random.default_rng(0)\n"
        "for m, k, n in [(1, 1, 1), (7, 33, 5), (257, 33, 65), (70, 300, 129)]:\n"
        "    for ta in (False, True):\n"
        "        for tb in (False, True):\n"
        "            a = r.standard_normal((k, m) if ta else (m, k)).astype(np.float32)\n"
        "            b = r.standard_normal((n, k) if tb else (k, n)).astype(np.float32)\n"
        "            c = np.empty((m, n), np.float32)\n"
        "            _cpu.gemm(a, b, c, ta, tb)\n"
        "            ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)\n"
        "            assert np.allclose(c, ref, atol=1e-3, rtol=1e-4), (m, k, n, ta, tb)\n"
    )
    run_python(["-c", code], env={"PE_GEMM_KERNEL": kernel, "OMP_NUM_THREADS": "2"}, check=True)


# (m, k, n) reaching each schedule of csrc/gemm.cpp with 2+ threads: the shared-B task list
# (<= 512^3 with enough row panels) over one block, over several K blocks (k above any
# cache-derived kc) and several N blocks; the static split (few rows, or > 512^3).
SCHEDULES = [(256, 256, 256), (200, 2100, 300), (97, 700, 1500), (64, 576, 3000), (530, 530, 530)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m,k,n", SCHEDULES)
def test_gemm_thread_schedules(rng, threads, m, k, n):
    before = pe.get_num_threads()
    pe.set_num_threads(threads)
    try:
        for ta, tb, beta in [(False, False, 0.0), (True, True, 0.5)]:
            a, b = _operands(rng, m, n, k, ta, tb)
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            c = c0.copy()
            _cpu.gemm(a, b, c, trans_a=ta, trans_b=tb, alpha=1.5, beta=beta)
            ref = _reference(a, b, c0, ta, tb, 1.5, beta)
            np.testing.assert_allclose(c, ref, atol=4e-5 * np.sqrt(k) * 1.5 + 1e-5, rtol=1e-4)
    finally:
        pe.set_num_threads(before)


def test_gemm_with_fewer_threads_than_asked():
    """OMP_THREAD_LIMIT=1 grants one thread where two are asked for: every schedule still covers
    all of C (the shared-B task list and the static split's stride over the team)."""
    code = (
        "import numpy as np, pyengine as pe\n"
        "from pyengine.backend.device import _cpu\n"
        "assert pe.get_num_threads() == 2\n"
        "r = np.random.default_rng(0)\n"
        f"for m, k, n in {SCHEDULES}:\n"
        "    a = r.standard_normal((m, k)).astype(np.float32)\n"
        "    b = r.standard_normal((k, n)).astype(np.float32)\n"
        "    c = np.full((m, n), np.nan, np.float32)\n"
        "    _cpu.gemm(a, b, c)\n"
        "    assert np.allclose(c, a.astype(np.float64) @ b, atol=1e-3, rtol=1e-4), (m, k, n)\n"
    )
    env = {"OMP_NUM_THREADS": "2", "OMP_THREAD_LIMIT": "1"}
    run_python(["-c", code], env=env, check=True)


@pytest.mark.parametrize(
    "given, want",
    [({}, "PASSIVE 10000"), ({"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "7"}, "ACTIVE 7")],
)
def test_openmp_wait_defaults(given, want):
    """pyengine's idle workers spin ~0.1 ms and then sleep (pyengine/__init__.py) unless the user
    chose otherwise."""
    code = "import os, pyengine\nprint(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])"
    out = run_python(
        ["-c", code],
        env=given,
        drop=("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
