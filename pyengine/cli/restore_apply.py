"""``pyengine deblur`` and ``pyengine sr``: run a trained deblurring / super-resolution model (or,
without ``--model``, only the classical baseline) on one image.

By default IMAGE is the clean reference: it is degraded with the model's forward model (the one
it was trained for, stored in its checkpoint), restored by the baseline and the model, and both
PSNRs are printed. With ``--observed`` IMAGE is already blurred / low-resolution and is only
restored. Without IMAGE, scikit-image's bundled ``camera`` picture is used. Outputs: the
restored image and a baseline / model / reference comparison PNG in ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pyengine.cli import UserError
from pyengine.cli.common import (
    check_channels,
    check_device,
    load_model,
    read_checkpoint,
    read_images,
)


def _default_image(channels: int) -> tuple[np.ndarray, str]:
    from pyengine.data.datasets import _bundled_image

    return _bundled_image("camera", channels), "camera"


def _load(args: argparse.Namespace, name: str) -> tuple[Any, str, Any]:
    from pyengine.cli.restore_inverse import INVERSE_ARCHS, Task, task_from_args

    if args.model is None:
        return None, "", task_from_args(args, name)
    model, arch = load_model(args.model, args.device)
    if INVERSE_ARCHS.get(arch) != name:
        raise UserError(f"'{args.model}' holds a {arch} model, not a {name} model")
    spec = json.loads(read_checkpoint(Path(args.model))["task"])
    if name == "sr" and args.scale is not None and args.scale != spec["scale"]:
        raise UserError(f"'{args.model}' was trained for x{spec['scale']}, not x{args.scale}")
    return model, arch, Task(spec)


def cmd_apply(args: argparse.Namespace) -> int:
    from pyengine.cli import plots
    from pyengine.cli.restore_inverse import run_model
    from pyengine.data import save_image

    name = args.task
    check_device(args.device)
    if name == "sr" and args.model is None and args.scale is None:
        args.scale = 2
    model, arch, task = _load(args, name)
    c = int(model.config().get("image_channels", 1)) if model is not None else 1
    if args.image:
        check_channels(read_images([args.image], None), [args.image], c)
        (img,) = read_images([args.image], c)
        stem = Path(args.image).stem
    else:
        img, stem = _default_image(c)
    out = Path(args.out)
    base_name = "Wiener" if name == "deblur" else "bicubic"
    if args.observed:
        obs, clean = img, None
    else:
        clean = task.prepare(img)
        obs = task.degrade(clean, np.random.default_rng(args.seed))
        save_image(out / f"{stem}_observed.png", obs)
    base = task.baseline(obs)
    save_image(out / f"{stem}_{base_name.lower()}.png", base)
    result = base if model is None else run_model(model, task.model_input(obs), args.device)
    label = arch or f"{base_name} (no --model)"
    save_image(out / f"{stem}_{name}.png", result)
    line = f"{out / (stem + '_' + name + '.png')}: {task.describe()}"
    if clean is not None:
        pb, pm = task.psnr(base, clean), task.psnr(result, clean)
        line += f"; PSNR {base_name} {pb:.2f} dB"
        if model is not None:
            line += f", {arch} {pm:.2f} dB ({pm - pb:+.2f})"
        plots.comparison(
            out / f"{stem}_comparison.png",
            base,
            result,
            clean,
            (f"{base_name} ({pb:.2f} dB)", f"{label} ({pm:.2f} dB)", "reference"),
        )
    print(line)
    if model is None:
        print(f"(no --model: baseline only; train one with `pyengine train {name}`)")
    return 0


def add_apply_parsers(sub: Any) -> None:
    from pyengine.cli.restore_inverse import add_degradation_args

    for name, text in (
        ("deblur", "deblur an image with a trained model, beside Wiener deconvolution"),
        ("sr", "super-resolve an image with a trained model, beside bicubic upsampling"),
    ):
        p = sub.add_parser(name, help=text, description=__doc__.split("\n\n")[0])
        p.add_argument("image", nargs="?", metavar="IMAGE", help="default: bundled 'camera'")
        p.add_argument("--model", help=f"checkpoint.npz from `pyengine train {name}`")
        p.add_argument(
            "--observed",
            action="store_true",
            help="IMAGE is already degraded (no reference, no PSNR)",
        )
        if name == "sr":
            p.add_argument(
                "--scale", type=int, choices=(2, 3, 4), help="default: the model's (or 2)"
            )
        else:
            add_degradation_args(p, name)
        p.add_argument("--out", default=name, help=f"output folder (default: {name}/)")
        p.add_argument("--seed", type=int, default=0, help="seed of the added noise")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.set_defaults(func=cmd_apply, task=name)
