import numpy as np
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F


def test_linear_relu_against_twin(device, rng):
    x = rng.standard_normal((7, 5))
    w = rng.standard_normal((3, 5))
    b = rng.standard_normal(3)
    check_op(lambda x, w, b: F.linear(x, w, b).relu(), [x, w, b], device=device)


def test_gradcheck_composite():
    a = pe.randn(3, 4, requires_grad=True)
    b = pe.rand(3, 4, requires_grad=True)
    assert pe.autograd.gradcheck(lambda a, b: (a * b).exp().sum(1) / (b.sum() + 1), [a, b])
