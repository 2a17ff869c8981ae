"""Forward models of the inverse problems, on float NumPy images shaped (C, H, W) in [0, 1].

Blur:  ``y = k * x + n``: a 2-D *convolution* (the kernel is flipped, as in
``scipy.ndimage.convolve``) with 'same' output size and 'reflect' borders in scipy's sense
(half-sample symmetric: ``d c b a | a b c d | d c b a``, NumPy's ``np.pad(mode="symmetric")``),
then white Gaussian noise of standard deviation ``sigma / 255`` (not clipped).

Downsampling: MATLAB's ``imresize(x, 1/s, 'bicubic')`` with its default antialiasing: Keys'
cubic (a = -0.5) stretched by ``s`` (so 4s taps per output pixel, weights scaled by 1/s and
normalised to sum 1), output pixel ``u`` (1-based) centred at input coordinate
``u*s + 0.5*(1 - s)``, borders mirrored as MATLAB does. It is the degradation under which the
super-resolution literature reports PSNRs. Computed in float64 on float data (MATLAB rounds uint8
inputs after each axis; literature code, and this one, resize the float image).

Masks: (1, H, W) float32, 1 = observed, 0 = missing, the same for every channel; the observation
is ``mask * x``. ``random_pixel_mask``: exactly ``round(ratio * H * W)`` pixels missing, uniformly
chosen. ``box_mask``: ``boxes`` squares of side ``size`` at uniform positions (the missing pixels
are their union: ``boxes * size**2`` when they do not overlap). ``text_mask``: lines of text in
Pillow's built-in bitmap font (6-pixel character advance, 11-pixel line, no file is read or
downloaded), a line every 16 font pixels from a random first row, each upscaled ``scale`` times by
pixel replication; the missing pixels are exactly the font's ink (17 % on average for the default
random words on 256x256 images: 15.9 to 18.9 % over seeds 0-49; 12 to 21 % on 96x96).
"""

from __future__ import annotations

import math

import numpy as np

from pyengine.data.transforms import add_gaussian_noise


# ---------------------------------------------------------------------------- blur kernels
def gaussian_kernel(sigma: float, size: int | None = None) -> np.ndarray:
    """Normalised isotropic Gaussian, ``size`` x ``size`` (default ``2*ceil(3 sigma) + 1``)."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"Gaussian blur sigma must be positive, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
    _check_size(size)
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def box_kernel(size: int) -> np.ndarray:
    """Uniform ``size`` x ``size`` average."""
    _check_size(size)
    return np.full((size, size), 1.0 / size**2)


def motion_kernel(length: float, angle: float = 0.0) -> np.ndarray:
    """A straight camera shake: a segment of ``length`` pixels centred on the kernel's centre, at
    ``angle`` degrees counter-clockwise from horizontal (rows grow downwards). Each pixel gets
    the share of the segment that falls in it (32 samples per pixel of length, each given to its
    nearest pixel); odd size, normalised to sum 1. Angle 0 with an odd integer length is
    exactly a row of ``length`` taps of 1/length."""
    if not (math.isfinite(length) and length >= 1):
        raise ValueError(f"motion blur length must be >= 1 pixel, got {length}")
    if not math.isfinite(angle):
        raise ValueError(f"motion blur angle must be finite, got {angle}")
    size = 2 * math.ceil((length - 1) / 2) + 1
    c = (size - 1) / 2
    n = int(math.ceil(32 * length))
    t = -length / 2 + (np.arange(n) + 0.5) * (length / n)  # midpoints of n equal pieces
    a = math.radians(angle)
    # Round away float noise (cos 90 degrees = 6e-17), so axis-aligned lines stay on the grid.
    xs = np.clip(np.rint(np.round(c + t * math.cos(a), 9)), 0, size - 1).astype(int)
    ys = np.clip(np.rint(np.round(c - t * math.sin(a), 9)), 0, size - 1).astype(int)
    k = np.zeros((size, size))
    np.add.at(k, (ys, xs), 1.0)
    return k / k.sum()


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size!r}")


def _check_image(x: np.ndarray, name: str = "image") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be shaped (C, H, W), got {x.shape}")
    return x


# ---------------------------------------------------------------------------- blur
def blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``kernel * x`` per channel, 'same' size, reflect (half-sample symmetric) borders.
    ``kernel`` has odd sides; float32 result."""
    x = _check_image(x)
    k = np.asarray(kernel, np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"blur kernel must be 2-D with odd sides, got shape {k.shape}")
    rh, rw = k.shape[0] // 2, k.shape[1] // 2
    C, H, W = x.shape
    if rh > H or rw > W:
        raise ValueError(f"blur kernel {k.shape} is larger than twice the image ({H}x{W})")
    p = np.pad(x.astype(np.float64), ((0, 0), (rh, rh), (rw, rw)), mode="symmetric")
    out = np.zeros((C, H, W))
    kf = k[::-1, ::-1]  # convolution = correlation with the flipped kernel
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            if kf[i, j] != 0:
                out += kf[i, j] * p[:, i : i + H, j : j + W]
    return out.astype(np.float32)


def blur_noise(
    x: np.ndarray, kernel: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """The deblurring observation ``k * x + n``, ``n ~ N(0, (sigma/255)^2)``, unclipped."""
    return add_gaussian_noise(blur(x, kernel), sigma, rng)


# ---------------------------------------------------------------------------- MATLAB imresize
def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(t)
    a2, a3 = a * a, a * a * a
    return (1.5 * a3 - 2.5 * a2 + 1) * (a <= 1) + (-0.5 * a3 + 2.5 * a2 - 4 * a + 2) * (
        (a > 1) & (a <= 2)
    )


def resize_matrix(n_in: int, n_out: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The (n_out, n_in) matrix of MATLAB's ``contributions`` for one axis (float64)."""
    width = 4.0
    if scale < 1 and antialias:
        width = width / scale
        h = lambda t: scale * _cubic(scale * t)  # noqa: E731
    else:
        h = _cubic
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = h(u[:, None] - idx)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # MATLAB's aux, 0-based
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    a = np.zeros((n_out, n_in))
    np.add.at(a, (np.repeat(np.arange(n_out), taps), src.ravel()), w.ravel())
    return a


def imresize(
    x: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """MATLAB ``imresize(x, scale, 'bicubic')`` (antialiased when shrinking) of a (C, H, W)
    image; the output size is ``ceil(scale * size)`` unless ``output_shape`` is given. Both axes
    use the same ``scale``, as MATLAB does for a scalar scale. float32 result, not clipped."""
    x = _check_image(x)
    H, W = x.shape[1:]
    if scale is None:
        if output_shape is None:
            raise ValueError("imresize needs a scale or an output_shape")
        oh, ow = output_shape
        sh, sw = oh / H, ow / W
    else:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"imresize scale must be positive, got {scale}")
        sh = sw = float(scale)
        oh, ow = output_shape or (math.ceil(scale * H), math.ceil(scale * W))
    if min(oh, ow) < 1:
        raise ValueError(f"imresize output would be empty ({oh}x{ow})")
    a_h, a_w = resize_matrix(H, oh, sh), resize_matrix(W, ow, sw)
    return np.matmul(np.matmul(a_h, x.astype(np.float64)), a_w.T).astype(np.float32)


def modcrop(x: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that H and W are multiples of ``scale`` (SR benchmark habit)."""
    x = _check_image(x)
    H, W = x.shape[1:]
    return x[:, : H - H % scale, : W - W % scale]


def bicubic_downsample(x: np.ndarray, scale: int) -> np.ndarray:
    """The SR observation: ``imresize(x, 1/scale)`` of an image whose sides are multiples of
    ``scale`` (call ``modcrop`` first)."""
    if scale not in (2, 3, 4):
        raise ValueError(f"super-resolution scale must be 2, 3 or 4, got {scale!r}")
    H, W = _check_image(x).shape[1:]
    if H % scale or W % scale:
        raise ValueError(f"image {H}x{W} is not a multiple of scale {scale}: modcrop it first")
    return imresize(x, 1.0 / scale, (H // scale, W // scale))


def bicubic_upsample(x: np.ndarray, scale: int) -> np.ndarray:
    """The SR baseline: ``imresize(lr, scale)``."""
    return imresize(x, float(scale))


# ---------------------------------------------------------------------------- masks
def random_pixel_mask(
    shape: tuple[int, int], missing: float, rng: np.random.Generator
) -> np.ndarray:
    """(1, H, W) float32 mask with exactly ``round(missing * H * W)`` missing pixels, chosen
    uniformly; the same mask applies to every channel."""
    if not 0 <= missing < 1:
        raise ValueError(f"missing-pixel ratio must be in [0, 1), got {missing}")
    H, W = shape
    n = int(round(missing * H * W))
    m = np.ones(H * W, np.float32)
    m[rng.choice(H * W, n, replace=False)] = 0
    return m.reshape(1, H, W)


def box_mask(shape: tuple[int, int], boxes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(1, H, W) float32 mask with ``boxes`` missing ``size`` x ``size`` squares, uniformly
    placed inside the image (they may overlap)."""
    H, W = shape
    if size < 1 or size > min(H, W) or boxes < 0:
        raise ValueError(f"box masks need 1 <= size <= {min(H, W)} and boxes >= 0")
    m = np.ones((1, H, W), np.float32)
    for _ in range(boxes):
        i, j = int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))
        m[:, i : i + size, j : j + size] = 0
    return m


# Pillow's built-in bitmap font: 6 pixels per character, 11 pixels per line of text.
FONT_ADVANCE, FONT_HEIGHT, TEXT_PITCH = 6, 11, 16


def _bitmap_font():
    from PIL import ImageFont

    # Pillow >= 10.1 answers load_default() with a FreeType (antialiased) font when it can;
    # the bitmap font is the same in every Pillow version and draws only 0 or 255.
    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


def _random_words(n_chars: int, rng: np.random.Generator) -> str:
    words, length = [], 0
    while length < n_chars:
        w = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, int(rng.integers(2, 9))))
        words.append(w)
        length += len(w) + 1
    return " ".join(words)


def text_mask(
    shape: tuple[int, int], rng: np.random.Generator, text: str | None = None, scale: int = 2
) -> np.ndarray:
    """(1, H, W) float32 mask whose missing pixels are lines of text across the image.

    On a canvas of ``ceil(H / scale)`` x ``ceil(W / scale)`` font pixels, line ``k`` is drawn with
    Pillow's bitmap font at column 0, row ``r0 + 16 k`` (``r0`` uniform in ``[0, 16)``), for every
    ``k`` whose row is inside the canvas; it reads ``text`` repeated (space separated) or, by
    default, random lower-case words of 2 to 8 letters, long enough to cross the canvas. The
    canvas is then upscaled by repeating each pixel ``scale`` x ``scale`` times and cropped to
    H x W: a pixel is missing exactly where the font put ink. Deterministic for a generator state.
    """
    from PIL import Image, ImageDraw

    H, W = shape
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"text mask scale must be a positive integer, got {scale!r}")
    if H < 1 or W < 1:
        raise ValueError(f"text mask needs a non-empty image, got {H}x{W}")
    if text is not None and not text.strip():
        raise ValueError("text mask text must contain a visible character")
    ch, cw = -(-H // scale), -(-W // scale)
    canvas = Image.new("L", (cw, ch), 0)
    draw, font = ImageDraw.Draw(canvas), _bitmap_font()
    n_chars = cw // FONT_ADVANCE + 1
    for row in range(int(rng.integers(0, TEXT_PITCH)), ch, TEXT_PITCH):
        if text is None:
            line = _random_words(n_chars, rng)
        else:
            line = " ".join([text] * (n_chars // (len(text) + 1) + 1))
        draw.text((0, row), line, fill=255, font=font)
    ink = np.asarray(canvas) > 0
    ink = ink.repeat(scale, 0).repeat(scale, 1)[:H, :W]
    return (~ink).astype(np.float32)[None]


def inpainting_mask(
    kind: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    ratio: float = 0.5,
    boxes: int = 4,
    box_size: int | None = None,
    text: str | None = None,
    text_scale: int = 2,
) -> np.ndarray:
    """One of the inpainting masks by name: ``random`` (``ratio`` of the pixels missing),
    ``box`` (``boxes`` squares of side ``box_size``, default an eighth of the shorter side) or
    ``text`` (``text_mask`` with ``text`` and ``text_scale``)."""
    if kind == "random":
        return random_pixel_mask(shape, ratio, rng)
    if kind == "box":
        size = max(1, min(shape) // 8) if box_size is None else box_size
        return box_mask(shape, boxes, size, rng)
    if kind == "text":
        return text_mask(shape, rng, text, text_scale)
    raise ValueError(f"unknown inpainting mask '{kind}' (random, box or text)")
