"""Image files (paths, bytes or streams) in, upright :class:`LoadedImage` out.

Pillow decodes every format in :data:`.formats.READABLE_FORMATS`; this module turns each PIL mode
into the model's float RGB plus alpha, and gathers the metadata the output will need. Pillow
quirks handled here (Pillow 13):

* TIFFs are rotated upright by Pillow itself while loading (and their Orientation tag dropped),
  whereas JPEG/PNG/WebP need ``ImageOps.exif_transpose``; applying it after ``load()`` is right
  for both, and the tag is read before ``load()`` for the 16-bit path.
* 16-bit colour PNG/TIFF open as 8-bit; :mod:`.deep` decodes them again at full depth.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from larsr_cli.atomic import os_reason
from larsr_cli.errors import ImageError, one_line

from .deep import decode_deep_colour, deep_colour_rawmode
from .formats import READABLE_FORMATS
from .loaded import LoadedImage
from .metadata import (
    clean_dpi,
    estimate_jpeg_quality,
    icc_space,
    orientation,
    srgb_icc,
    tiff_exif,
    upright_exif,
)
from .pixels import gray_to_rgb, to_unit, unit_float

__all__ = ["load_image", "pil_arrays"]

_GRAY_MODES = frozenset({"1", "L", "LA", "La"})
_RGB_MODES = frozenset({"RGB", "RGBX", "YCbCr", "HSV", "LAB"})
_RGBA_MODES = frozenset({"RGBA", "RGBa", "PA"})
_U16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def load_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    max_pixels: int | None = None,
    name: str | None = None,
) -> LoadedImage:
    """Decode any image Pillow can read into an upright :class:`LoadedImage`.

    ``max_pixels`` is our own limit on top of Pillow's decompression-bomb guard
    (``Image.MAX_IMAGE_PIXELS``, whose warning level is treated as an error here too); ``None``
    leaves only Pillow's. ``name`` labels a bytes or stream source in error messages. Every
    failure a user can cause raises :class:`ImageError` with one line naming the file. Animated
    and multi-page files are refused: upscaling frame 1 alone would silently lose the others.
    """
    label = name or _label(source)
    openable, raw = _openable(source, label)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(openable, formats=READABLE_FORMATS) as im:
                _check_pixels(im, max_pixels, label)
                _check_single_frame(im, label)
                loaded = _decode(im, raw, label)
        notes = tuple(dict.fromkeys(f"decoder: {one_line(str(w.message))}" for w in caught))
        return dataclasses.replace(loaded, notes=notes) if notes else loaded
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a possible decompression bomb: {one_line(exc)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image (unknown or unsupported file format)") from exc
    except MemoryError as exc:
        raise ImageError(f"{label}: not enough memory to decode this image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as exc:
        raise ImageError(f"{label}: truncated or corrupt image ({one_line(exc)})") from exc


def _check_single_frame(im: Image.Image, label: str) -> None:
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > 1:
        what = "multi-page" if im.format == "TIFF" else "animated"
        raise ImageError(
            f"{label}: {what} image with {frames} frames; larsr upscales single images "
            "(extract the frames first, e.g. ffmpeg -i in.gif frame%04d.png)"
        )


def pil_arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour and alpha of an in-memory PIL image, upright and converted exactly as a file of the
    same mode would be (16-bit, CMYK with its ICC profile, palette transparency)."""
    im = im.copy()
    _exif_transpose(im)
    rgb, alpha, *_ = _split_pil(im, im.info.get("icc_profile") or None, "image")
    return rgb, alpha


# ---- the source ------------------------------------------------------------------------------


def _label(source: object) -> str:
    """Name the source in error messages: the path, or the stream's name (stdin says <stdin>)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    stream_name = getattr(source, "name", None)
    return stream_name if isinstance(stream_name, str) else "<stream>"


def _openable(source: object, label: str) -> tuple[Path | io.BytesIO, Path | bytes]:
    """Return what Pillow opens and what OpenCV re-reads for 16-bit colour.

    Streams are read whole: stdin is not seekable and Pillow needs to seek.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_file(path, label)
        return path, path
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            data = source.read()  # type: ignore[attr-defined]
        except OSError as exc:
            raise ImageError(f"{label}: cannot read: {os_reason(exc)}") from exc
    if not data:
        raise ImageError(f"{label}: empty input (0 bytes)")
    return io.BytesIO(data), data


def _check_file(path: Path, label: str) -> None:
    """Give the common file mistakes their own message instead of Pillow's generic ones."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ImageError(f"{label}: no such file") from exc
    except OSError as exc:
        raise ImageError(f"{label}: cannot read: {os_reason(exc)}") from exc
    if path.is_dir():
        raise ImageError(f"{label}: is a directory, not an image")
    if st.st_size == 0:
        raise ImageError(f"{label}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{label}: cannot read: permission denied")


def _check_pixels(im: Image.Image, max_pixels: int | None, label: str) -> None:
    """Refuse before decoding: our limit, zero sizes, and Pillow's limit again.

    Pillow's own check runs inside ``Image.open``, but its warning level is a process-global
    warnings filter that another thread could change under us, so the limit is re-checked here.
    """
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image has zero width or height ({w}x{h})")
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = Image.MAX_IMAGE_PIXELS if limit is None else min(limit, Image.MAX_IMAGE_PIXELS)
    if limit is not None and w * h > limit:
        raise ImageError(f"{label}: image too large ({w}x{h} = {w * h:,} pixels, limit {limit:,})")


# ---- decoding ----------------------------------------------------------------------------------


def _decode(im: Image.Image, raw: Path | bytes, label: str) -> LoadedImage:
    """Fully decode (so truncation shows up now, not mid-upscale), orient, and split channels."""
    deep_rawmode = deep_colour_rawmode(im)  # before load(), which drops the tile list
    source_mode = im.mode
    turn = orientation(im)  # TIFF drops the tag in load(), so read it first
    im.load()
    icc = im.info.get("icc_profile") or None
    exif = upright_exif(im.info["exif"]) if "exif" in im.info else tiff_exif(im)
    dpi = clean_dpi(im.info.get("dpi"))
    _exif_transpose(im)
    loaded = decode_deep_colour(im, raw, deep_rawmode, turn) if deep_rawmode else None
    if loaded is None:
        rgb, alpha, depth, gray, icc = _split_pil(im, icc, label)
        loaded = LoadedImage(rgb=rgb, alpha=alpha, mode=source_mode, bit_depth=depth, grayscale=gray)
    return dataclasses.replace(
        loaded,
        icc_profile=icc,
        exif=exif,
        dpi=dpi,
        format=im.format,
        jpeg_quality=estimate_jpeg_quality(im),
    )


def _exif_transpose(im: Image.Image) -> None:
    """Rotate upright in place; malformed EXIF must not make an otherwise fine photo unreadable."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except (SyntaxError, ValueError, TypeError, KeyError, struct.error):
        pass


def _split_pil(
    im: Image.Image, icc: bytes | None, label: str
) -> tuple[np.ndarray, np.ndarray | None, int, bool, bytes | None]:
    """Turn a decoded PIL image into (rgb, alpha, bit_depth, grayscale, icc) for every mode.

    The ICC profile is returned because CMYK conversion replaces it.
    """
    mode = im.mode
    if mode in _GRAY_MODES:
        arr = np.asarray(im.convert("LA" if "A" in mode or "a" in mode else "L"))
        gray, alpha = (arr[..., 0], arr[..., 1]) if arr.ndim == 3 else (arr, None)
        return gray_to_rgb(to_unit(gray, 255)), _unit_opt(alpha, 255), 8, True, icc
    if mode in _U16_MODES:
        return gray_to_rgb(to_unit(np.asarray(im), 65535)), None, 16, True, icc
    if mode == "I":
        return gray_to_rgb(to_unit(np.clip(np.asarray(im), 0, 65535), 65535)), None, 16, True, icc
    if mode == "F":
        return gray_to_rgb(unit_float(np.asarray(im))), None, 16, True, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        return to_unit(np.asarray(im), 255), None, 8, False, icc
    if mode == "P":
        mode = "RGBA" if im.has_transparency_data else "RGB"
    if mode in _RGB_MODES or mode in _RGBA_MODES:
        target = "RGBA" if mode in _RGBA_MODES else "RGB"
        arr = np.asarray(im if im.mode == target else im.convert(target))
        alpha = _unit_opt(arr[..., 3] if target == "RGBA" else None, 255)
        return to_unit(arr[..., :3], 255), alpha, 8, False, icc
    raise ImageError(f"{label}: unsupported image mode {im.mode}")


def _unit_opt(arr: np.ndarray | None, maxval: float) -> np.ndarray | None:
    return None if arr is None else to_unit(arr, maxval)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Colour-manage CMYK to sRGB when the file has a CMYK profile; else Pillow's naive formula.

    Either way the CMYK profile must not be carried: it would describe the wrong colour space.
    """
    if icc and icc_space(icc) == "CMYK":
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted, srgb_icc()
        except Exception:  # missing lcms, or a profile lcms rejects: fall back, still usable
            pass
    return im.convert("RGB"), None
