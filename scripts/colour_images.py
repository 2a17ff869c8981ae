"""Write a colour training set and the issue's colour test set as PNG folders.

Usage: python scripts/colour_images.py OUT [--tile N] [--grey DIR]

``OUT/test`` holds the scikit-image colour samples that issue 16 names (astronaut, coffee,
chelsea, rocket). ``OUT/train`` holds every other natural colour picture that ships inside the
installed packages, so nothing is downloaded and no test image is trained on: scikit-learn's
china and flower, matplotlib's grace_hopper, and scikit-image's retina, hubble_deep_field,
immunohistochemistry and both motorcycle stereo views. Needs scikit-image, scikit-learn and
matplotlib (all in the test extra).

``--tile N`` writes the training pictures as N x N tiles, leaving out flat ones (the black
surround of retina and hubble_deep_field): ``PatchDataset`` picks images uniformly, so tiles make
a picture's share of the patches follow its area. ``--grey DIR`` also copies DIR's images (e.g.
Train400) into ``OUT/train``; ``pyengine train dncnn --rgb`` repeats a grey image into three equal
channels, so the colour model learns image structure from them and colour from the tiles.
"""

import argparse
import shutil
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_images

TEST = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
# A tile whose luma spans less than this (of 255) is background, not picture.
FLAT_RANGE = 32


def train_images() -> dict[str, np.ndarray]:
    left, right, _ = data.stereo_motorcycle()
    sample = load_sample_images()
    out = {Path(f).stem: img for f, img in zip(sample.filenames, sample.images)}
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out["grace_hopper"] = np.asarray(Image.open(hopper).convert("RGB"))
    out.update(motorcycle_left=left, motorcycle_right=right)
    for name in ("retina", "hubble_deep_field", "immunohistochemistry"):
        out[name] = getattr(data, name)()
    return {name: np.ascontiguousarray(img[..., :3]) for name, img in out.items()}


def tiles(images: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, img in images.items():
        h, w = img.shape[:2]
        for i in range(0, h - n + 1, n):
            for j in range(0, w - n + 1, n):
                t = img[i : i + n, j : j + n]
                luma = t @ np.array([0.299, 0.587, 0.114])
                if np.ptp(luma) >= FLAT_RANGE:
                    out[f"{name}_{i:04d}_{j:04d}"] = np.ascontiguousarray(t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (train/ and test/ are written in it)")
    p.add_argument("--tile", type=int, help="write the training pictures as TILE x TILE tiles")
    p.add_argument("--grey", type=Path, help="also copy this folder's grey images into train/")
    args = p.parse_args()
    train = train_images()
    if args.tile:
        train = tiles(train, args.tile)
    for sub, images in (("train", train), ("test", TEST)):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
        for name, img in images.items():
            Image.fromarray(img).save(args.out / sub / f"{name}.png")
        print(f"{args.out / sub}: {len(images)} colour images")
    if args.grey:
        grey = [f for f in sorted(args.grey.iterdir()) if f.is_file()]
        for f in grey:
            shutil.copy(f, args.out / "train" / f"grey_{f.name}")
        print(f"{args.out / 'train'}: {len(grey)} grey images from {args.grey}")


if __name__ == "__main__":
    main()
