"""``pyengine.data``: image folders, the bundled default images, noisy-patch sampling, the
forward models of the inverse problems (``pyengine.data.degrade``: blur, MATLAB-bicubic
downsampling, masks) and a threaded ``DataLoader``."""

from pyengine.data.datasets import (
    BUNDLED_TRAIN,
    BUNDLED_VAL,
    ImageFolder,
    ImageList,
    PatchDataset,
    bundled_images,
)
from pyengine.data.degrade import (
    bicubic_downsample,
    bicubic_upsample,
    blur,
    blur_noise,
    box_kernel,
    box_mask,
    gaussian_kernel,
    imresize,
    inpainting_mask,
    modcrop,
    motion_kernel,
    random_pixel_mask,
    text_mask,
)
from pyengine.data.io import (
    IMAGE_EXTENSIONS,
    ImageError,
    list_images,
    load_image,
    save_image,
    to_uint8,
)
from pyengine.data.loader import DataLoader, default_collate
from pyengine.data.sampler import DistributedSampler
from pyengine.data.transforms import (
    add_gaussian_noise,
    dihedral,
    inverse_dihedral,
    protocol_noise,
    random_crop,
)

__all__ = [
    "bicubic_downsample",
    "bicubic_upsample",
    "blur",
    "blur_noise",
    "box_kernel",
    "box_mask",
    "gaussian_kernel",
    "imresize",
    "inpainting_mask",
    "modcrop",
    "motion_kernel",
    "random_pixel_mask",
    "text_mask",
    "BUNDLED_TRAIN",
    "BUNDLED_VAL",
    "DataLoader",
    "DistributedSampler",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "ImageFolder",
    "ImageList",
    "PatchDataset",
    "add_gaussian_noise",
    "bundled_images",
    "default_collate",
    "dihedral",
    "inverse_dihedral",
    "list_images",
    "load_image",
    "protocol_noise",
    "random_crop",
    "save_image",
    "to_uint8",
]
