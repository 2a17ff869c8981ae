import numpy as np
import pytest

import pyengine as pe

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not pe.cuda.is_available(), reason="no CUDA device available"),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def torch():
    """PyTorch as an optional reference (the `test` extra installs it); skip when absent."""
    return pytest.importorskip("torch")
