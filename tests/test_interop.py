"""State dicts between pyengine and PyTorch: the two snippets of docs/pytorch_interop.md are
extracted from the document and run verbatim, so the documentation cannot drift from the code."""

import re
from pathlib import Path

import numpy as np

import pyengine as pe

DOC = Path(__file__).resolve().parent.parent / "docs" / "pytorch_interop.md"


def _snippets() -> dict[str, str]:
    """Section title -> the python code block under it."""
    text = DOC.read_text()
    found = re.findall(r"^## (.+?)\n.*?```python\n(.*?)```", text, flags=re.S | re.M)
    return {title.strip(): code for title, code in found}


def conv_net(nn):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 4, 2, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def _warm_up(lib, model, rng, steps=3):
    """A few training-mode forwards so the batch-norm buffers hold non-default values."""
    model.train()
    with lib.no_grad():
        for _ in range(steps):
            model(lib.from_numpy(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)))
    model.eval()


def _outputs(lib, model, x):
    with lib.no_grad():
        return model(lib.from_numpy(x)).numpy()


def test_doc_has_both_snippets():
    assert set(_snippets()) == {"pyengine to PyTorch", "PyTorch to pyengine"}


def test_pyengine_to_pytorch(torch, rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pe.manual_seed(0)
    model, torch_model = conv_net(pe.nn), conv_net(torch.nn)
    _warm_up(pe, model, rng)
    torch_model.eval()
    exec(_snippets()["pyengine to PyTorch"], {"pe": pe, "model": model, "torch_model": torch_model})
    tstate = torch_model.state_dict()
    assert list(tstate) == list(model.state_dict())
    assert tstate["1.num_batches_tracked"].item() == 3
    assert tstate["1.num_batches_tracked"].dtype == torch.int64
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(tstate[k].numpy(), v.numpy(), err_msg=k)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        _outputs(torch, torch_model, x), _outputs(pe, model, x), rtol=1e-5, atol=1e-5
    )


def test_pytorch_to_pyengine(torch, rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model, torch_model = conv_net(pe.nn), conv_net(torch.nn)
    _warm_up(torch, torch_model, rng)
    exec(_snippets()["PyTorch to pyengine"], {"model": model, "torch_model": torch_model})
    state = model.state_dict()
    assert list(state) == list(torch_model.state_dict())
    assert state["5.num_batches_tracked"].item() == 3
    assert state["5.num_batches_tracked"].dtype == np.int64
    for k, v in torch_model.state_dict().items():
        np.testing.assert_array_equal(state[k].numpy(), v.numpy(), err_msg=k)
    model.eval()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        _outputs(pe, model, x), _outputs(torch, torch_model, x), rtol=1e-5, atol=1e-5
    )


def test_batchnorm_buffers_update_like_pytorch(torch, rng):
    """The running statistics that travel in the state dict are updated by the same formula."""
    pe.manual_seed(1)
    model, torch_model = conv_net(pe.nn), conv_net(torch.nn)
    torch_model.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    )
    _warm_up(pe, model, np.random.default_rng(7))
    _warm_up(torch, torch_model, np.random.default_rng(7))
    tstate = torch_model.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), tstate[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
