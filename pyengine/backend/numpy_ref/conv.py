"""NumPy twin of csrc/conv.cpp: 2-D convolution and transposed convolution, NCHW.

Every kernel loops over the R*S kernel taps; each tap is a strided view of the zero-padded input
contracted with the weight over channels (grouped as (G, C/G)). The direct and im2col variants of
the C++ side share one implementation here, and ``algo`` is accepted and ignored.
"""

import numpy as np

__all__ = [
    "conv2d_direct_forward",
    "conv2d_im2col_forward",
    "conv2d_direct_backward_input",
    "conv2d_im2col_backward_input",
    "conv2d_direct_backward_weight",
    "conv2d_im2col_backward_weight",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_input",
    "conv_transpose2d_backward_weight",
]


def _padded_shape(H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw):
    """Zero padding (top, bottom, left, right) that covers every tap of a (P, Q) output; the
    bottom/right pad may differ from the top/left one (padding "same", transposed convs)."""
    bottom = max(0, (P - 1) * sh + dh * (R - 1) + 1 - H - ph)
    right = max(0, (Q - 1) * sw + dw * (S - 1) + 1 - W - pw)
    return ph, bottom, pw, right


def _tap(xp, r, s, P, Q, sh, sw, dh, dw):
    return xp[..., r * dh : r * dh + (P - 1) * sh + 1 : sh, s * dw : s * dw + (Q - 1) * sw + 1 : sw]


def conv2d_forward(
    x, w, b, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, relu=False
):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = y.shape[2:]
    G = groups
    if y.size == 0:  # as the kernel: no padded copy for an empty batch, however large its planes
        return
    t, bo, le, ri = _padded_shape(
        H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w
    )
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, ri))).reshape(N, G, Cg, H + t + bo, W + le + ri)
    wg = w.reshape(G, K // G, Cg, R, S)
    out = np.zeros((N, G, K // G, P, Q), dtype=y.dtype)
    for r in range(R):
        for s in range(S):
            tap = _tap(xp, r, s, P, Q, stride_h, stride_w, dilation_h, dilation_w)
            out += np.einsum("ngcpq,gkc->ngkpq", tap, wg[..., r, s])
    out = out.reshape(N, K, P, Q)
    if b is not None:
        out += b.reshape(1, K, 1, 1)
    y[...] = np.maximum(out, 0) if relu else out


def conv2d_backward_input(
    gy, w, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
):
    N, C, H, W = gx.shape
    K, Cg, R, S = w.shape
    P, Q = gy.shape[2:]
    G = groups
    if gx.size == 0 or gy.size == 0:
        gx[...] = 0
        return
    t, bo, le, ri = _padded_shape(
        H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w
    )
    gxp = np.zeros((N, G, Cg, H + t + bo, W + le + ri), dtype=gx.dtype)
    gyg = gy.reshape(N, G, K // G, P, Q)
    wg = w.reshape(G, K // G, Cg, R, S)
    for r in range(R):
        for s in range(S):
            tap = _tap(gxp, r, s, P, Q, stride_h, stride_w, dilation_h, dilation_w)
            tap += np.einsum("ngkpq,gkc->ngcpq", gyg, wg[..., r, s])
    gx[...] = gxp.reshape(N, C, H + t + bo, W + le + ri)[:, :, t : t + H, le : le + W]


def conv2d_backward_weight(
    x, gy, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
):
    N, C, H, W = x.shape
    K, Cg, R, S = gw.shape
    P, Q = gy.shape[2:]
    G = groups
    if x.size == 0 or gy.size == 0:
        gw[...] = 0
        if gb is not None:
            gb[...] = 0
        return
    t, bo, le, ri = _padded_shape(
        H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w
    )
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, ri))).reshape(N, G, Cg, H + t + bo, W + le + ri)
    gyg = gy.reshape(N, G, K // G, P, Q)
    for r in range(R):
        for s in range(S):
            tap = _tap(xp, r, s, P, Q, stride_h, stride_w, dilation_h, dilation_w)
            gw[:, :, r, s] = np.einsum("ngcpq,ngkpq->gkc", tap, gyg).reshape(K, Cg)
    if gb is not None:
        gb[...] = gy.sum(axis=(0, 2, 3))


conv2d_direct_forward = conv2d_im2col_forward = conv2d_forward
conv2d_direct_backward_input = conv2d_im2col_backward_input = conv2d_backward_input
conv2d_direct_backward_weight = conv2d_im2col_backward_weight = conv2d_backward_weight


def conv_transpose2d_forward(
    x, w, b, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, algo="im2col"
):
    conv2d_backward_input(x, w, y, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)


def conv_transpose2d_backward_input(
    gy, w, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, algo="im2col"
):
    conv2d_forward(
        gy, w, None, gx, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
    )


def conv_transpose2d_backward_weight(
    x, gy, gw, gb, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, algo="im2col"
):
    conv2d_backward_weight(
        gy, x, gw, None, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
    )
    if gb is not None:
        gb[...] = gy.sum(axis=(0, 2, 3))
