"""NumPy twin of csrc/gemm.cpp."""

__all__ = ["gemm"]


def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    r = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    c[...] = r if beta == 0 else r + beta * c
