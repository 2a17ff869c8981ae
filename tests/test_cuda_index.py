"""The CUDA kernels' index arithmetic, run on the CPU.

``pyengine._cuda_index`` compiles ``cuda/index.cuh`` with the host compiler and runs the same
inline functions the kernels call over every thread of small launches. These tests compare the
results with NumPy (and PyTorch where installed), so the indexing is checked without a GPU.
"""

import itertools

import numpy as np
import pytest

ci = pytest.importorskip("pyengine._cuda_index")


# ------------------------------------------------------------------ broadcasting / strided copies
@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((2, 3, 4), (2, 3, 4)),
        ((2, 3, 4), (4,)),
        ((2, 1, 4), (3, 1)),
        ((1,), (5, 2)),
        ((), (3, 2)),
        ((2, 3, 1, 5), (1, 3, 4, 1)),
        ((4, 1, 1, 2, 1, 3), (1, 5, 2, 1, 7, 1)),
        ((0, 3), (1, 3)),
    ],
)
def test_broadcast_offsets_match_numpy(a_shape, b_shape, rng):
    out = np.broadcast_shapes(a_shape, b_shape)
    a = rng.standard_normal(a_shape)
    b = rng.standard_normal(b_shape)
    oa, ob, nd = ci.broadcast_offsets(a_shape, b_shape, out)
    assert nd <= len(out) or len(out) == 0
    got = (a.reshape(-1)[oa] + b.reshape(-1)[ob]).reshape(out)
    np.testing.assert_array_equal(got, a + b)


def test_broadcast_rejects_incompatible_shapes():
    with pytest.raises(ValueError):
        ci.broadcast_offsets((2, 3), (4,), (2, 3))


def _strides(shape):
    return tuple(int(s) // 8 for s in np.empty(shape).strides)


@pytest.mark.parametrize(
    "shape, perm",
    [((2, 3, 4), (2, 0, 1)), ((5, 1, 3), (1, 2, 0)), ((2, 3, 4, 5), (0, 2, 1, 3)), ((7,), (0,))],
)
def test_permute_offsets(shape, perm, rng):
    x = rng.standard_normal(shape)
    st = _strides(shape)
    oshape = tuple(shape[d] for d in perm)
    src, dst, _ = ci.strided_offsets(oshape, [st[d] for d in perm], _strides(oshape))
    out = np.empty(int(np.prod(oshape)))
    out[dst] = x.reshape(-1)[src]
    np.testing.assert_array_equal(out.reshape(oshape), x.transpose(perm))


@pytest.mark.parametrize(
    "index", [np.s_[1:, ::2], np.s_[::-1, 1], np.s_[..., 2:0:-1], np.s_[None, 0, 1:3], np.s_[3, 4]]
)
def test_slice_view_offsets(index):
    """The views CUDABackend derives for basic indexing, copied by the strided-copy mapping."""
    from pyengine.backend.cuda_backend import _contiguous_strides, _view

    x = np.arange(4 * 6, dtype=np.float64).reshape(4, 6)
    off, shape, st = _view(x.shape, index)
    src, dst, _ = ci.strided_offsets(shape, st, _contiguous_strides(shape))
    out = np.empty(int(np.prod(shape)))
    out[dst] = x.reshape(-1)[off + src]
    np.testing.assert_array_equal(out.reshape(shape), x[index])
    lo, hi = ci.extent(shape, st, off)
    if out.size:
        assert lo == (off + src).min() and hi == (off + src).max()


def test_coalescing_merges_contiguous_dims():
    _, _, nd = ci.strided_offsets((2, 3, 4), (12, 4, 1), (12, 4, 1))
    assert nd == 1
    _, _, nd = ci.strided_offsets((2, 3, 4), (1, 8, 2), (12, 4, 1))
    assert nd == 2  # the last two dims are still contiguous with each other in both
    _, _, nd = ci.strided_offsets((2, 3, 4), (1, 2, 8), (12, 4, 1))
    assert nd == 3


def test_launch_covers_every_index_once():
    for n in (1, 255, 256, 257, 10_000):
        oa, ob, _ = ci.strided_offsets((n,), (1,), (1,))
        assert sorted(oa.tolist()) == list(range(n))


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("n, parts", [(10, 3), (3, 5), (1000, 7), (0, 2), (64, 64)])
def test_split_ranges_partition(n, parts):
    r = ci.split_ranges(n, parts)
    assert r[0][0] == 0 and r[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(r, r[1:]))
    sizes = [e - b for b, e in r]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "shape, dims",
    [
        ((6, 5), (1,)),
        ((6, 5), (0,)),
        ((4, 3, 5), (0, 2)),
        ((4, 3, 5), (1,)),
        ((2, 3, 4, 5), (0, 2, 3)),
        ((2, 3, 4, 5), (1, 3)),
        ((1, 7, 1), (1,)),
        ((3, 4), (0, 1)),
    ],
)
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("rows", [False, True])
def test_sum_reduce_partitioning(shape, dims, splits, rows, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    out_shape = tuple(1 if i in dims else s for i, s in enumerate(shape))
    got = ci.sum_reduce(x, out_shape, splits, rows)
    np.testing.assert_allclose(got, x.sum(axis=dims, keepdims=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape, dims",
    [((1 << 20,), (0,)), ((200000, 5), (0,)), ((5, 200000), (1,)), ((3000, 7, 40), (0, 2))],
)
def test_long_sum_with_launch_splits_is_accurate(shape, dims):
    """The launcher's own split choice (as in tests/test_reduce.py::test_long_sum_is_accurate)."""
    x = np.full(shape, 0.1, np.float32)
    out_shape = tuple(1 if i in dims else s for i, s in enumerate(shape))
    m = int(np.prod(out_shape))
    inner_reduced = dims[-1] == len(shape) - 1
    assert ci.reduce_splits(m, x.size // m, inner_reduced) >= 1
    got = ci.sum_reduce(x, out_shape, 0, inner_reduced)
    np.testing.assert_allclose(got, float(np.float32(0.1)) * (x.size // m), rtol=1e-5)


# ------------------------------------------------------------------ convolution
def _im2col_ref(x, R, S, stride, pad, dil):
    C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    P = (H + 2 * pad[0] - dil[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + 2 * pad[1] - dil[1] * (S - 1) - 1) // stride[1] + 1
    col = np.empty((C, R, S, P, Q), x.dtype)
    for r, s in itertools.product(range(R), range(S)):
        h0, w0 = r * dil[0], s * dil[1]
        col[:, r, s] = xp[
            :, h0 : h0 + stride[0] * P : stride[0], w0 : w0 + stride[1] * Q : stride[1]
        ]
    return col.reshape(C * R * S, P * Q)


CONV_CASES = [
    # C, H, W, R, S, stride, pad, dil
    (2, 5, 6, 3, 3, (1, 1), (1, 1), (1, 1)),
    (3, 7, 7, 3, 2, (2, 1), (0, 1), (1, 1)),
    (1, 9, 8, 3, 3, (2, 2), (2, 1), (2, 2)),
    (2, 4, 4, 1, 1, (1, 1), (0, 0), (1, 1)),
    (1, 6, 5, 2, 3, (3, 2), (1, 2), (1, 2)),
]


@pytest.mark.parametrize("C, H, W, R, S, stride, pad, dil", CONV_CASES)
def test_im2col_matches_reference(C, H, W, R, S, stride, pad, dil, rng):
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    col = ci.im2col(x, R, S, *stride, *pad, *dil)
    np.testing.assert_array_equal(col, _im2col_ref(x, R, S, stride, pad, dil))


@pytest.mark.parametrize("C, H, W, R, S, stride, pad, dil", CONV_CASES)
def test_col2im_is_adjoint_of_im2col(C, H, W, R, S, stride, pad, dil, rng):
    """col2im as a per-input gather equals the scatter-add of im2col's transpose."""
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    col = ci.im2col(x, R, S, *stride, *pad, *dil)
    c = rng.standard_normal(col.shape).astype(np.float32)
    gx = ci.col2im(c, C, H, W, R, S, *stride, *pad, *dil)
    # Scatter-add reference through the index map of a numbered input.
    ids = np.arange(C * H * W, dtype=np.float32).reshape(C, H, W) + 1
    idmap = _im2col_ref(ids, R, S, stride, pad, dil).astype(np.int64) - 1
    ref = np.zeros(C * H * W)
    np.add.at(ref, idmap[idmap >= 0], c[idmap >= 0])
    np.testing.assert_allclose(gx.reshape(-1), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ pooling
def _out(n, k, s, p, d=1, ceil=False):
    num = n + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


POOL_CASES = [
    (5, 6, 2, 2, 0, 1, False),
    (7, 7, 3, 2, 1, 1, False),
    (8, 9, 3, 2, 1, 2, True),
    (4, 4, 2, 1, 1, 1, True),
    (6, 5, 3, 3, 1, 1, True),
]


@pytest.mark.parametrize("H, W, k, s, p, d, ceil", POOL_CASES)
def test_maxpool_windows(H, W, k, s, p, d, ceil, rng, torch):
    x = rng.standard_normal((3, H, W)).astype(np.float32)
    P, Q = _out(H, k, s, p, d, ceil), _out(W, k, s, p, d, ceil)
    y, am = ci.maxpool(x, k, k, s, s, p, p, d, d, P, Q)
    ty, tam = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), k, s, p, d, ceil_mode=ceil, return_indices=True
    )
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(am, tam.numpy())


def test_maxpool_ties_pick_first():
    x = np.ones((1, 4, 4), np.float32)
    y, am = ci.maxpool(x, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2)
    np.testing.assert_array_equal(am[0], [[0, 2], [8, 10]])


@pytest.mark.parametrize("H, W, k, s, p, d, ceil", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_windows(H, W, k, s, p, d, ceil, count_include_pad, rng, torch):
    if p > k // 2:
        pytest.skip("PyTorch requires pad <= kernel_size / 2")
    x = rng.standard_normal((2, H, W)).astype(np.float32)
    P, Q = _out(H, k, s, p, 1, ceil), _out(W, k, s, p, 1, ceil)
    y = ci.avgpool(x, k, k, s, s, p, p, count_include_pad, P, Q)
    ty = torch.nn.functional.avg_pool2d(
        torch.from_numpy(x), k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad
    )
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("H, W, P, Q", [(7, 5, 3, 2), (8, 8, 1, 1), (5, 9, 5, 4), (3, 3, 6, 7)])
def test_adaptive_avgpool_windows(H, W, P, Q, rng, torch):
    x = rng.standard_normal((2, H, W)).astype(np.float32)
    y = ci.adaptive_avgpool(x, P, Q)
    ty = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (P, Q))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ interpolation and padding
@pytest.mark.parametrize("H, W, OH, OW", [(4, 5, 8, 10), (6, 6, 3, 4), (3, 7, 7, 3), (1, 2, 3, 5)])
@pytest.mark.parametrize(
    "mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)]
)
def test_interpolate_sources(H, W, OH, OW, mode, align_corners, rng, torch):
    x = rng.standard_normal((2, H, W)).astype(np.float32)
    y = ci.interpolate(x, OH, OW, mode, bool(align_corners))
    ty = torch.nn.functional.interpolate(
        torch.from_numpy(x)[None], size=(OH, OW), mode=mode, align_corners=align_corners
    )[0]
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "mode, np_mode", [(0, "constant"), (1, "reflect"), (2, "edge"), (3, "wrap")]
)
@pytest.mark.parametrize("pads", [(1, 2, 2, 1), (0, 3, 3, 0), (2, 2, 2, 2)])
def test_pad_sources(mode, np_mode, pads, rng):
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    left, right, top, bottom = pads
    y = ci.pad(x, left, right, top, bottom, mode, 0.0)
    ref = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode=np_mode)
    np.testing.assert_array_equal(y, ref)


# ------------------------------------------------------------------ random numbers
def test_philox_known_answers():
    """Known-answer vectors of Philox4x32-10 from the Random123 distribution."""
    assert ci.philox(0, 0, 0, 0, 0, 0) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    m = 0xFFFFFFFF
    assert ci.philox(m, m, m, m, m, m) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert ci.philox(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0) == (
        0xD16CFE09,
        0x94FDCCEB,
        0x5001E420,
        0x24126EA1,
    )


def test_uniform01_range():
    assert ci.uniform01(0) == 0.0
    assert ci.uniform01(0xFFFFFFFF) < 1.0
    assert ci.uniform01(0x80000000) == 0.5
