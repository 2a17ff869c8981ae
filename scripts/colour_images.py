"""Write a colour training set and the issue's colour test set as PNG folders.

Usage: python scripts/colour_images.py OUT

``OUT/test`` holds the scikit-image colour samples that issue 16 names (astronaut, coffee,
chelsea, rocket). ``OUT/train`` holds every other natural colour picture that ships inside the
installed packages, so nothing is downloaded and no test image is trained on: scikit-learn's
china and flower, matplotlib's grace_hopper, and scikit-image's retina, hubble_deep_field,
immunohistochemistry and both motorcycle stereo views. Needs scikit-image, scikit-learn and
matplotlib (all in the test extra).
"""

import sys
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_images

TEST = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}


def train_images() -> dict[str, np.ndarray]:
    left, right, _ = data.stereo_motorcycle()
    sample = load_sample_images()
    out = {Path(f).stem: img for f, img in zip(sample.filenames, sample.images)}
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out["grace_hopper"] = np.asarray(Image.open(hopper).convert("RGB"))
    out.update(motorcycle_left=left, motorcycle_right=right)
    for name in ("retina", "hubble_deep_field", "immunohistochemistry"):
        out[name] = getattr(data, name)()
    return out


def main() -> None:
    root = Path(sys.argv[1])
    for sub, images in (("train", train_images()), ("test", TEST)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name, img in images.items():
            Image.fromarray(np.ascontiguousarray(img[..., :3])).save(root / sub / f"{name}.png")
        print(f"{root / sub}: {len(images)} images")


if __name__ == "__main__":
    main()
