"""Float (or integer) pixels out to a file or bytes, as the same kind of image the source was.

Which writer runs is the format's business: TIFF goes to :mod:`.tiff` (tifffile), 16-bit colour
PNG to :mod:`.png16` (Pillow has no 16-bit colour), everything else to Pillow. What the output
can hold (alpha, gray, 16 bits, metadata) comes from the format's record in :mod:`.formats`.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from larsr_cli.atomic import atomic_write, exists_message
from larsr_cli.errors import ImageError, one_line

from .formats import ImageFormat, find_format, output_format
from .loaded import LoadedImage
from .metadata import Meta, output_meta
from .pixels import flatten_on_white, gray_to_rgb, quantise, to_gray
from .png16 import encode_png16
from .tiff import encode_tiff

__all__ = ["AlphaFlattenedWarning", "encode_image", "save_bytes", "save_image"]

_DEPTH_DTYPE: dict[int, type] = {8: np.uint8, 16: np.uint16}


class AlphaFlattenedWarning(UserWarning):
    """Alpha was composited onto white because the output format (JPEG, BMP) cannot store it."""


@dataclass(frozen=True)
class _Target:
    """What to write: the format, the sample layout and the depth (8, 16, or 32 = float)."""

    fmt: ImageFormat
    gray: bool
    depth: int


def save_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    like: LoadedImage | None = None,
    format: str | None = None,
    quality: int | None = None,
    strip_metadata: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write float [0, 1] pixels atomically as the same kind of image ``like`` was.

    ``like`` (the loaded source) decides grayscale vs colour and 8 vs 16 bits (16 only where the
    format has it: PNG, TIFF; a float TIFF source gives a float TIFF) and supplies the ICC
    profile, EXIF and dpi (dpi scaled so the print size stays the same). JPEG and BMP cannot
    store alpha: it is composited onto white and an :class:`AlphaFlattenedWarning` is issued.
    ``strip_metadata`` drops ICC, EXIF and dpi. An existing file is never replaced unless
    ``overwrite``; a failed or interrupted save leaves no partial file behind.
    """
    path = Path(path)
    fmt = output_format(format, path)
    if not overwrite and os.path.lexists(path):
        raise ImageError(exists_message(path))
    pixels, target = _prepare(rgb, alpha, like, fmt)
    meta = _meta(like, pixels, target, strip_metadata)
    with atomic_write(path, overwrite=overwrite) as fp:
        _encode_into(fp, pixels, target, meta, quality)
    return path


def encode_image(
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    like: LoadedImage | None = None,
    format: str | None = None,
    quality: int | None = None,
    strip_metadata: bool = False,
) -> bytes:
    """Encode like :func:`save_image` but return the bytes (for ``-o -``, i.e. stdout).

    Without ``format`` the source's format is used if we can write it, else PNG.
    """
    if format is None:
        source = like.format if like is not None and like.format else None
        format = source if source and find_format(source) is not None else "png"
    fmt = output_format(format)
    pixels, target = _prepare(rgb, alpha, like, fmt)
    meta = _meta(like, pixels, target, strip_metadata)
    out = io.BytesIO()
    try:
        _encode_into(out, pixels, target, meta, quality)
    except OSError as exc:
        raise ImageError(f"cannot encode image as {fmt.pillow}: {one_line(exc)}") from exc
    return out.getvalue()


save_bytes = encode_image
"""Alias of :func:`encode_image`."""


def _prepare(
    rgb: np.ndarray, alpha: np.ndarray | None, like: LoadedImage | None, fmt: ImageFormat
) -> tuple[np.ndarray, _Target]:
    """Float pixels in the output's channel layout (L, LA, RGB or RGBA) and how to store them.

    Integer pixels of the output's own depth pass through uncopied where nothing needs floats.
    """
    colour = _check_rgb(rgb)
    alpha = _check_alpha(alpha, colour.shape[:2])
    gray = (like.grayscale if like is not None else colour.ndim == 2) and fmt.grayscale
    depth = _depth(like, fmt, gray, alpha is not None)
    integer_ok = alpha is None and not gray and colour.ndim == 3 and colour.dtype == _DEPTH_DTYPE.get(depth)
    if colour.dtype != np.float32 and not integer_ok:
        colour = colour.astype(np.float32) / np.float32(np.iinfo(colour.dtype).max)
    if alpha is not None and not fmt.alpha:
        warnings.warn(
            f"{fmt.pillow} cannot store transparency; alpha was flattened onto white (use png to keep it)",
            AlphaFlattenedWarning,
            stacklevel=3,
        )
        colour, alpha = flatten_on_white(colour, alpha), None
    if gray:
        colour = to_gray(colour)
    elif colour.ndim == 2:
        colour = gray_to_rgb(colour)
    target = _Target(fmt=fmt, gray=gray, depth=_depth(like, fmt, gray, alpha is not None))
    if alpha is None:
        return colour, target
    planes = [colour] if colour.ndim == 2 else [colour[..., i] for i in range(3)]
    return np.stack([*planes, alpha], axis=2), target


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Accept HxW, HxWx1 or HxWx3; anything else is a programming error, not a user error.

    uint8/uint16 arrays are kept as they are (full scale = 1.0): a 16K output costs 4x less as
    integers than as float32, and is written without a float copy when nothing needs one.
    """
    arr = np.asarray(rgb)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise ValueError(f"expected an HxWx3 or HxW image array, got shape {np.shape(rgb)}")
    return arr


def _check_alpha(alpha: np.ndarray | None, hw: tuple[int, ...]) -> np.ndarray | None:
    if alpha is None:
        return None
    arr = np.asarray(alpha, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(hw):
        raise ValueError(f"alpha shape {np.shape(alpha)} does not match image size {tuple(hw)}")
    return arr


def _depth(like: LoadedImage | None, fmt: ImageFormat, gray: bool, has_alpha: bool) -> int:
    """16 bits where both the source had them and the format can hold them; float for float TIFF."""
    if like is None or like.bit_depth < 16 or not fmt.deep:
        return 8
    if like.mode == "F" and fmt.float_samples and gray and not has_alpha:
        return 32
    return 16


def _meta(like: LoadedImage | None, pixels: np.ndarray, target: _Target, strip: bool) -> Meta:
    """The output's metadata; 16-bit gray+alpha is written as RGBA, so it needs an RGB profile."""
    gray_samples = pixels.ndim == 2 or (pixels.shape[2] == 2 and target.depth == 8)
    return output_meta(like, target.fmt, pixels.shape[1], gray_samples, strip)


def _encode_into(fp: IO[bytes], pixels: np.ndarray, target: _Target, meta: Meta, quality: int | None) -> None:
    """tifffile for TIFF, OpenCV for 16-bit colour PNG, Pillow for everything else."""
    if target.fmt.writer == "tifffile":
        fp.write(encode_tiff(_samples(pixels, target.depth), meta))
    elif target.depth == 16 and pixels.ndim == 3:
        fp.write(encode_png16(_samples(pixels, 16), meta))
    else:
        # L, LA, RGB, RGBA, I;16 or F by shape and dtype; 16-bit gray must be I;16, as Pillow 13
        # cannot write mode I as PNG.
        image = Image.fromarray(_samples(pixels, target.depth))
        image.save(fp, format=target.fmt.pillow, **_pillow_params(target.fmt, meta, quality))


def _samples(pixels: np.ndarray, depth: int) -> np.ndarray:
    """The integers (or float32) a file stores; 16-bit gray+alpha becomes RGBA, which every
    reader (Pillow, OpenCV) handles, unlike LA;16."""
    if depth == 32:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    if depth == 16 and pixels.ndim == 3 and pixels.shape[2] == 2:
        g, a = pixels[..., 0], pixels[..., 1]
        pixels = np.stack([g, g, g, a], axis=2)
    return quantise(pixels, _DEPTH_DTYPE[depth])


def _pillow_params(fmt: ImageFormat, meta: Meta, quality: int | None) -> dict[str, object]:
    """Encoder options from the format's record; metadata is passed only where present."""
    params: dict[str, object] = {}
    if fmt.compress_level is not None:
        params["compress_level"] = fmt.compress_level
    if fmt.quality is not None:
        chosen = fmt.quality if quality is None else int(quality)
        params["quality"] = chosen
        if fmt.full_chroma_from is not None and chosen >= fmt.full_chroma_from:
            params["subsampling"] = 0  # 4:4:4: do not halve the chroma we just upscaled
    if meta.icc:
        params["icc_profile"] = meta.icc
    if meta.exif:
        params["exif"] = meta.exif
    if meta.dpi:
        params["dpi"] = meta.dpi  # Pillow rounds to whole dpi where the format needs it (JPEG)
    return params
