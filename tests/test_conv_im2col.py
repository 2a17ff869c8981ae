"""csrc/conv_im2col.cpp under OpenMP teams smaller than asked for (the weight gradient's
per-thread partial sums)."""

from pyrun import run_python

# A 64->64 conv's input gradient first leaves its transposed weights (non-zero) in the calling
# thread's scratch; the small conv's weight gradient then takes the images-in-parallel path
# (batch 4, 2 threads asked for) with per-thread partial sums in that same scratch. With
# OMP_THREAD_LIMIT=1 the runtime grants one thread: the second part is never written and must
# not be summed. Checked against the float64 NumPy twin.
CODE = """
import numpy as np, pyengine as pe
from pyengine.ops.conv import conv2d
assert pe.get_num_threads() == 2
r = np.random.default_rng(0)
x = pe.tensor(r.standard_normal((1, 64, 8, 8), dtype=np.float32), requires_grad=True)
w = pe.tensor(r.standard_normal((64, 64, 3, 3), dtype=np.float32), requires_grad=True)
conv2d(x, w, padding=1, algo="im2col").sum().backward()
xs = r.standard_normal((4, 4, 9, 9), dtype=np.float32)
ws = r.standard_normal((8, 4, 3, 3), dtype=np.float32)
grads = []
for dtype in (np.float32, np.float64):
    wt = pe.tensor(ws.astype(dtype), requires_grad=True)
    conv2d(pe.tensor(xs.astype(dtype)), wt, padding=1, algo="im2col").sum().backward()
    grads.append(wt.grad.numpy())
err = np.abs(grads[0] - grads[1]).max()
assert err < 1e-3, err
"""


def test_weight_grad_with_fewer_threads_than_asked():
    run_python(["-c", CODE], env={"OMP_NUM_THREADS": "2", "OMP_THREAD_LIMIT": "1"}, check=True)


# PE_GEMM_SCRATCH_LIMIT makes the GEMM's scratch allocation fail past that many floats. The
# implicit-im2col forward (stride 2: patches packed by pack_patches inside the GEMM), a plain
# 2-thread GEMM and a Tensor product must raise MemoryError: the GEMM takes every buffer,
# pack_patches' line included, before its OpenMP region opens, where a throw would terminate.
ALLOC_CODE = """
import numpy as np, pyengine as pe
from pyengine.backend.device import _cpu
from pyengine.ops.conv import conv2d
assert pe.get_num_threads() == 2
r = np.random.default_rng(0)
x = pe.tensor(r.standard_normal((2, 8, 20, 20), dtype=np.float32))
w = pe.tensor(r.standard_normal((16, 8, 3, 3), dtype=np.float32))
conv2d(x, w, stride=2, padding=1, algo="im2col")  # within the limit
x = pe.tensor(r.standard_normal((2, 64, 96, 96), dtype=np.float32))
w = pe.tensor(r.standard_normal((64, 64, 3, 3), dtype=np.float32))
a = r.standard_normal((300, 300), dtype=np.float32)
for fn in (
    lambda: conv2d(x, w, stride=2, padding=1, algo="im2col"),
    lambda: _cpu.gemm(a, a, np.empty_like(a)),
    lambda: pe.tensor(a) @ pe.tensor(a),
):
    try:
        fn()
    except MemoryError:
        continue
    raise SystemExit("no MemoryError")
"""


def test_gemm_scratch_failure_raises_memory_error():
    env = {"OMP_NUM_THREADS": "2", "PE_GEMM_SCRATCH_LIMIT": "20000"}
    r = run_python(["-c", ALLOC_CODE], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
