"""The API coverage table (docs/api_coverage.md): PyTorch's commonly used names, and whether
pyengine has each, found by looking them up on pyengine itself (never written by hand).

Regenerate after adding names:   python tests/api_coverage.py
tests/test_api_coverage.py fails when the committed table differs from what exists, when a
missing name has no reason below, and (with torch installed) when a listed name is not PyTorch's.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api_coverage.md"

# (section, torch module path, pyengine module path or "Tensor", names)
SECTIONS: list[tuple[str, str, str, list[str]]] = [
    (
        "Tensor methods and attributes",
        "torch.Tensor",
        "pyengine.Tensor",
        """abs add add_ all any argmax argmin argsort backward bool chunk clamp clamp_ clip clone
        contiguous copy_ cos cpu cuda cumsum data detach detach_ device dim div div_ double dtype
        eq exp expand expand_as expm1 fill_ flatten flip float floor gather ge grad grad_fn gt
        half index_select int is_contiguous is_cuda is_leaf isnan item le log log1p
        log_softmax long lt masked_fill matmul max maximum mean min minimum mT mul mul_ ndim ne
        neg new_full new_ones new_tensor new_zeros norm numel numpy permute pow prod register_hook
        relu repeat requires_grad requires_grad_ reshape retain_grad roll round shape sigmoid
        sign sin size softmax sort split sqrt squeeze std sub sub_ sum t T tanh to tolist topk
        transpose type type_as unbind unsqueeze var view view_as where zero_""".split(),
    ),
    (
        "Top-level functions",
        "torch",
        "pyengine",
        """abs arange argmax cat chunk clamp cos einsum exp eye flatten from_numpy full
        full_like linspace load log log_softmax manual_seed matmul max maximum mean min minimum
        no_grad enable_grad ones ones_like permute rand rand_like randint randn randn_like relu
        reshape save set_grad_enabled sigmoid sin softmax sort split sqrt stack sum tanh tensor
        topk transpose where zeros zeros_like""".split(),
    ),
    (
        "Autograd",
        "torch.autograd",
        "pyengine.autograd",
        "Function backward grad gradcheck detect_anomaly no_grad enable_grad".split(),
    ),
    (
        "nn modules",
        "torch.nn",
        "pyengine.nn",
        """Module Parameter Sequential ModuleList ModuleDict Identity Linear Conv1d Conv2d
        ConvTranspose2d MaxPool2d AvgPool2d AdaptiveAvgPool2d AdaptiveMaxPool2d BatchNorm1d
        BatchNorm2d LayerNorm GroupNorm InstanceNorm2d Dropout Dropout2d Embedding Flatten
        Unflatten ReLU ReLU6 LeakyReLU PReLU ELU GELU SiLU Mish Sigmoid Tanh Hardtanh Softplus
        Softmax LogSoftmax Upsample PixelShuffle PixelUnshuffle RNN LSTM GRU MultiheadAttention
        TransformerEncoderLayer""".split(),
    ),
    (
        "Losses",
        "torch.nn",
        "pyengine.nn",
        """MSELoss L1Loss CrossEntropyLoss NLLLoss BCELoss BCEWithLogitsLoss SmoothL1Loss
        HuberLoss KLDivLoss""".split(),
    ),
    (
        "nn.functional",
        "torch.nn.functional",
        "pyengine.nn.functional",
        """relu leaky_relu gelu elu silu softplus prelu mish hardtanh relu6 sigmoid tanh softmax
        log_softmax linear
        conv2d conv_transpose2d max_pool2d avg_pool2d adaptive_avg_pool2d batch_norm layer_norm
        group_norm instance_norm dropout dropout2d interpolate pad one_hot embedding mse_loss
        l1_loss cross_entropy nll_loss binary_cross_entropy binary_cross_entropy_with_logits
        smooth_l1_loss huber_loss kl_div normalize cosine_similarity pixel_shuffle
        pixel_unshuffle unfold fold grid_sample""".split(),
    ),
    (
        "nn.utils",
        "torch.nn.utils",
        "pyengine.nn.utils",
        "clip_grad_norm_ clip_grad_value_ parameters_to_vector vector_to_parameters".split(),
    ),
    (
        "Optimizers",
        "torch.optim",
        "pyengine.optim",
        "SGD Adam AdamW RMSprop Adagrad Adadelta Adamax NAdam RAdam LBFGS".split(),
    ),
    (
        "LR schedulers",
        "torch.optim.lr_scheduler",
        "pyengine.optim.lr_scheduler",
        """StepLR MultiStepLR ExponentialLR CosineAnnealingLR LambdaLR OneCycleLR
        ReduceLROnPlateau CosineAnnealingWarmRestarts CyclicLR LinearLR SequentialLR""".split(),
    ),
    (
        "utils.data",
        "torch.utils.data",
        "pyengine.utils.data",
        """Dataset TensorDataset DataLoader Subset random_split default_collate ConcatDataset
        IterableDataset Sampler RandomSampler""".split(),
    ),
]

_API_CORE = "issue 13 tensor op/autograd work of api-core (its own branch)"
_PIXEL = "issue 16 (inverse) adds the pixel-shuffle family"
_SEQ = "sequence models: not used by the course's CNNs, out of issue 13's scope"
_LATER = "not requested in issue 13; not yet needed by the course's models"

_OPERATOR = "the operator form exists (a + b, a < b, -a); the method name is not defined yet"
# Tensor ops and autograd names that issue 13 lists (api-core's part of it).
_ISSUE_TENSOR_OPS = """clamp clamp_ clip where masked_fill min argmin argmax std var prod norm
    any all
    sign round floor sin cos log1p expm1 maximum minimum repeat expand split chunk unbind flip roll
    sort topk cumsum linspace eye full_like rand_like new_full new_ones new_zeros new_tensor int
    type half mT add_ mul_ sub_ div_ register_hook grad""".split()

# Why a name is missing. Names that exist are not looked up here.
REASONS: dict[str, str] = {
    **{n: _OPERATOR for n in "add sub mul div neg eq ne lt le gt ge".split()},
    **{n: _API_CORE for n in _ISSUE_TENSOR_OPS},
    "bool": _LATER,
    "argsort": _LATER,
    "gather": _LATER,
    "index_select": _LATER,
    "isnan": _LATER,
    "view_as": _LATER,
    "expand_as": _LATER,
    "PixelShuffle": _PIXEL,
    "PixelUnshuffle": _PIXEL,
    "pixel_shuffle": _PIXEL,
    "pixel_unshuffle": _PIXEL,
    "RNN": _SEQ,
    "LSTM": _SEQ,
    "GRU": _SEQ,
    "MultiheadAttention": _SEQ,
    "TransformerEncoderLayer": _SEQ,
    "einsum": "needs a general contraction kernel; matmul covers the course's uses",
    "Conv1d": "pyengine's conv kernels are 2-D; a (N, C, L) input is Conv2d with a 1-row image",
    "AdaptiveMaxPool2d": _LATER,
    "KLDivLoss": _LATER,
    "kl_div": _LATER,
    "normalize": _LATER,
    "cosine_similarity": _LATER,
    "unfold": "im2col exists inside the conv kernels but is not exposed as an op",
    "fold": "col2im exists inside the conv kernels but is not exposed as an op",
    "grid_sample": _LATER,
    "Adagrad": _LATER,
    "Adadelta": _LATER,
    "Adamax": _LATER,
    "NAdam": _LATER,
    "RAdam": _LATER,
    "LBFGS": "needs closures re-evaluating the loss; no course model uses it",
    "CosineAnnealingWarmRestarts": _LATER,
    "CyclicLR": _LATER,
    "SequentialLR": _LATER,
    "IterableDataset": _LATER,
    "Sampler": "samplers are accepted as any iterable of indices (sampler=, batch_sampler=)",
    "RandomSampler": "shuffle=True; any iterable of indices works as sampler=",
}


def _lookup(path: str) -> object:
    mod, _, attr = path.rpartition(".")
    if attr and attr[0].isupper() and mod:
        return getattr(importlib.import_module(mod), attr)
    return importlib.import_module(path)


def status() -> list[tuple[str, str, bool]]:
    """(section, name, exists in pyengine) for every listed name."""
    out = []
    for section, _, ours, names in SECTIONS:
        obj = _lookup(ours)
        out += [(section, n, hasattr(obj, n)) for n in names]
    return out


def render() -> str:
    rows = status()
    lines = [
        "# PyTorch API coverage",
        "",
        "PyTorch's commonly used tensor methods, functions, `nn` modules, losses, optimizers, "
        "schedulers and data utilities, and whether pyengine has each (same name, PyTorch's "
        "arguments). Generated by `python tests/api_coverage.py` from the lists in that file, "
        "by looking each name up on pyengine; `tests/test_api_coverage.py` fails when this file "
        "is stale or a missing name has no reason.",
        "",
    ]
    have = sum(ok for *_, ok in rows)
    lines += [f"Covered: {have} of {len(rows)} names.", ""]
    for section, torch_path, ours, _ in SECTIONS:
        sec = [(n, ok) for s, n, ok in rows if s == section]
        n_ok = sum(ok for _, ok in sec)
        lines += [f"## {section} (`{torch_path}` -> `{ours}`): {n_ok}/{len(sec)}", ""]
        lines += ["| name | pyengine | reason when missing |", "|---|---|---|"]
        for n, ok in sec:
            lines.append(
                f"| `{n}` | {'yes' if ok else 'missing'} | {'' if ok else REASONS.get(n, '')} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(DOC.parents[1]))
    DOC.write_text(render())
    print(f"wrote {DOC}")
