"""Pixel maths shared by decoding, encoding and the upscaling pipeline.

Everything here works on numpy arrays only (no files, no Pillow), so the one rounding rule, the
one resampler and the one orientation table are the same wherever pixels change representation.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "LUMA",
    "flatten_on_white",
    "gray_to_rgb",
    "orient",
    "quantise",
    "resize_float",
    "to_gray",
    "to_unit",
    "unit_float",
]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R 601 weights, as Pillow's ``convert("L")``, so our gray output matches a gray source."""


def quantise(pixels: np.ndarray, dtype: type) -> np.ndarray:
    """Float [0, 1] to integers of ``dtype`` by the one rounding rule: round half to even.

    ``np.rint`` is what the training data, the benchmarks and numpy use, so a value is rounded the
    same way when the model learns it and when larsr writes it; NaN becomes 0 rather than garbage.
    Integer input of ``dtype`` is returned as is; float dtypes are only clipped to [0, 1].
    """
    if not np.issubdtype(dtype, np.integer):
        return np.clip(pixels, 0.0, 1.0).astype(dtype, copy=False)
    if pixels.dtype == dtype:
        return pixels
    maxval = float(np.iinfo(dtype).max)
    out = pixels * np.float32(maxval)
    np.rint(out, out=out)
    np.clip(out, 0.0, maxval, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(dtype)


def to_unit(arr: np.ndarray, maxval: float) -> np.ndarray:
    """Integer samples to contiguous float32 in [0, 1] (``maxval`` maps to 1.0)."""
    out = np.ascontiguousarray(arr, dtype=np.float32)
    out *= np.float32(1.0 / maxval)
    return out


def unit_float(arr: np.ndarray) -> np.ndarray:
    """Float samples are taken as already in [0, 1]; HDR values above 1 are clipped, NaN is 0."""
    out = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """The model is RGB-only: replicate the gray channel (a real copy, the core may write in place)."""
    return np.repeat(gray[..., None], 3, axis=2)


def to_gray(colour: np.ndarray) -> np.ndarray:
    """Luma of the model's RGB output for a grayscale source (its channels differ only slightly)."""
    return colour if colour.ndim == 2 else colour @ LUMA


def flatten_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white, the usual page colour, for outputs that cannot store alpha."""
    a = np.clip(alpha, 0.0, 1.0)
    a = a if colour.ndim == 2 else a[..., None]
    return colour * a + (1.0 - a)


def orient(stored: np.ndarray, orientation: int) -> np.ndarray:
    """The upright view of pixels stored with EXIF ``orientation`` 1..8 (anything else: as stored).

    The same transform as Pillow's ``ImageOps.exif_transpose``: 2 mirrors, 3 turns 180 degrees,
    4 flips, 5 transposes, 6 turns 90 degrees clockwise, 7 transverses, 8 turns 90 counter-clockwise.
    Returns a view; works on HxW and HxWxC arrays alike.
    """
    t = stored.swapaxes(0, 1)
    views = {2: stored[:, ::-1], 3: stored[::-1, ::-1], 4: stored[::-1], 5: t}
    views.update({6: t[:, ::-1], 7: t[::-1, ::-1], 8: t[::-1]})
    return views.get(orientation, stored)


def resize_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float pixels (HxW or HxWxC) to ``size`` = (width, height), clipped to [0, 1].

    INTER_AREA when shrinking (the x4 result down to a smaller ``--scale``: no aliasing),
    bicubic when enlarging (alpha channels, which the model does not upscale). Bicubic overshoots
    at edges, hence the clip.
    """
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"target size must be positive, got {size}")
    src = np.ascontiguousarray(image, dtype=np.float32)
    if (src.shape[1], src.shape[0]) == (w, h):
        return src.copy()
    shrink = w <= src.shape[1] and h <= src.shape[0]
    out = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if src.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing axis of length 1
        out = out[..., None]
    return np.clip(out, 0.0, 1.0, out=out)


def bleed_under_alpha(rgb: np.ndarray, alpha: np.ndarray, rounds: int = 6) -> np.ndarray:
    """Colour under fully transparent pixels replaced by the visible colour around it.

    Cut-outs usually store black (or junk) under alpha 0. The network sees RGB only, so at a hard
    edge it blends the subject with that black and the upscaled edge turns dark where alpha is
    still high (a fringe: edge luma 47 against 105 inside). Premultiplied-style pull-push fills
    the hidden area with alpha-weighted averages of visible colour at growing radii, so colour
    continues across the edge; visible pixels are untouched, so opaque images are unaffected.
    """
    hidden = alpha <= (0.5 / 255.0)
    if not hidden.any() or hidden.all():
        return rgb
    weight = (~hidden).astype(np.float32)
    visible = rgb * weight[..., None]
    out = rgb.copy()
    todo = hidden.copy()
    for i in range(rounds):
        k = 2 * (2**i) + 1  # 3, 5, 9, 17, 33, 65 px boxes
        num = cv2.blur(visible, (k, k))
        den = cv2.blur(weight, (k, k))
        ready = todo & (den > 1e-6)
        out[ready] = num[ready] / den[ready, None]
        todo &= ~ready
        if not todo.any():
            break
    if todo.any():  # far from anything visible: the mean visible colour
        out[todo] = visible.sum(axis=(0, 1)) / weight.sum()
    return out
