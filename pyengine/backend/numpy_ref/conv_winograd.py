"""NumPy twin of csrc/conv_winograd.cpp: Winograd F(mxm, 3x3) convolution, float64, NCHW.

The same algorithm as the C++ kernels, not a direct convolution under another name: each m x m
output tile is ``A^T [(G g G^T) * (B^T d B)] A`` over an (m+2) x (m+2) input tile, the input
gradient is the same conv of gy with the 180-degree rotated, transposed filter, and the weight
gradient its adjoint ``G^T [sum over tiles (A gy A^T) * (B^T d B)] G``. In float64 the transforms
are exact to ~1e-15, so the twin equals the direct convolution and serves as the tests' oracle.
Only 3x3 kernels, stride 1, dilation 1, groups 1 (the C++ side raises ValueError otherwise).
"""

import numpy as np

__all__ = [
    f"conv2d_{algo}_{pass_}"
    for algo in ("winograd", "winograd_f2", "winograd_f4")
    for pass_ in ("forward", "backward_input", "backward_weight", "backward")
]

DEFAULT_TILE = 4  # csrc/conv_winograd.cpp: wino_default_tile()

_TILES = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            float,
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ]
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            float,
        ),
    ),
}


def _check(w, stride_h, stride_w, dilation_h, dilation_w, groups):
    if w.shape[2:] != (3, 3) or (stride_h, stride_w, dilation_h, dilation_w, groups) != (
        1,
        1,
        1,
        1,
        1,
    ):
        raise ValueError(
            "conv: algo 'winograd' needs a 3x3 kernel, stride 1, dilation 1 and groups 1"
        )


def _tiles(x, offh, offw, Po, Qo, m):
    """Input tiles (N, C, tP, tQ, a, a) of x shifted by (offh, offw), zero outside."""
    N, C, H, W = x.shape
    tP, tQ = -(-Po // m), -(-Qo // m)
    Hp, Wp = tP * m + 2, tQ * m + 2
    xp = np.zeros((N, C, Hp, Wp), x.dtype)
    r0, r1 = max(0, -offh), min(Hp, H - offh)
    c0, c1 = max(0, -offw), min(Wp, W - offw)
    if r1 > r0 and c1 > c0:
        xp[:, :, r0:r1, c0:c1] = x[:, :, r0 + offh : r1 + offh, c0 + offw : c1 + offw]
    win = np.lib.stride_tricks.sliding_window_view(xp, (m + 2, m + 2), axis=(2, 3))
    return win[:, :, ::m, ::m][:, :, :tP, :tQ]


def _conv(x, U, offh, offw, Po, Qo, m):
    """out[n,o,p,q] = sum_{i,r,s} f[o,i,r,s] x[n,i,p+offh+r,q+offw+s]; U (a, a, Co, Ci)."""
    BT, _, AT = _TILES[m]
    V = np.einsum("ij,nctqjk,lk->nctqil", BT, _tiles(x, offh, offw, Po, Qo, m), BT)
    M = np.einsum("ijoc,nctqij->notqij", U, V)
    Y = np.einsum("ui,notqij,vj->notquv", AT, M, AT)
    N, Co, tP, tQ = Y.shape[:4]
    return Y.transpose(0, 1, 2, 4, 3, 5).reshape(N, Co, tP * m, tQ * m)[:, :, :Po, :Qo]


def _filter(w, m):
    """U (a, a, K, C) = G w G^T per (K, C) filter."""
    G = _TILES[m][1]
    return np.einsum("ir,kcrs,js->ijkc", G, w, G)


def _forward(
    m, x, w, b, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, relu=False
):
    _check(w, stride_h, stride_w, dilation_h, dilation_w, groups)
    out = _conv(x, _filter(w, m), -pad_h, -pad_w, *y.shape[2:], m)
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    y[...] = np.maximum(out, 0) if relu else out


def _backward_input(m, gy, w, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups):
    _check(w, stride_h, stride_w, dilation_h, dilation_w, groups)
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    gx[...] = _conv(gy, _filter(flipped, m), pad_h - 2, pad_w - 2, *gx.shape[2:], m)


def _backward_weight(
    m, x, gy, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
):
    _check(gw, stride_h, stride_w, dilation_h, dilation_w, groups)
    BT, G, AT = _TILES[m]
    N, K, P, Q = gy.shape
    V = np.einsum("ij,nctqjk,lk->nctqil", BT, _tiles(x, -pad_h, -pad_w, P, Q, m), BT)
    tP, tQ = V.shape[2:4]
    gyp = np.zeros((N, K, tP * m, tQ * m), gy.dtype)
    gyp[:, :, :P, :Q] = gy
    gyt = gyp.reshape(N, K, tP, m, tQ, m).transpose(0, 1, 2, 4, 3, 5)
    Z = np.einsum("ui,nktquv,vj->nktqij", AT, gyt, AT)
    dU = np.einsum("nktqij,nctqij->ijkc", Z, V)
    gw[...] = np.einsum("ir,ijkc,js->kcrs", G, dU, G)
    if gb is not None:
        gb[...] = gy.sum(axis=(0, 2, 3))


def _bind(m):
    def forward(
        x, w, b, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, relu=False
    ):
        _forward(
            m, x, w, b, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, relu
        )

    def backward_input(gy, w, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups):
        _backward_input(
            m, gy, w, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
        )

    def backward_weight(
        x, gy, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
    ):
        _backward_weight(
            m, x, gy, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
        )

    def backward(
        x, gy, w, gx, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
    ):
        """Both gradients in one call, as the C++ backward_pass computes them (one copy of gy
        there; the same two passes here)."""
        geo = (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups)
        _backward_input(m, gy, w, gx, *geo)
        _backward_weight(m, x, gy, gw, gb, *geo)

    return forward, backward_input, backward_weight, backward


(
    conv2d_winograd_forward,
    conv2d_winograd_backward_input,
    conv2d_winograd_backward_weight,
    conv2d_winograd_backward,
) = _bind(DEFAULT_TILE)
(
    conv2d_winograd_f2_forward,
    conv2d_winograd_f2_backward_input,
    conv2d_winograd_f2_backward_weight,
    conv2d_winograd_f2_backward,
) = _bind(2)
(
    conv2d_winograd_f4_forward,
    conv2d_winograd_f4_backward_input,
    conv2d_winograd_f4_backward_weight,
    conv2d_winograd_f4_backward,
) = _bind(4)
