"""What travels with the pixels: ICC profile, EXIF, dpi, the source's JPEG quality.

Read from a source by :mod:`.decode`, chosen for an output by :func:`output_meta` (only what the
output format stores and the output pixels still match), written by the format's encoder.
"""

from __future__ import annotations

import functools
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .formats import ImageFormat
from .loaded import LoadedImage

__all__ = [
    "EXIF_HEADER",
    "ORIENTATION_TAG",
    "Meta",
    "MetadataDroppedWarning",
    "clean_dpi",
    "estimate_jpeg_quality",
    "icc_space",
    "orientation",
    "output_meta",
    "srgb_icc",
    "tiff_exif",
    "upright_exif",
]

ORIENTATION_TAG = 0x0112
EXIF_HEADER = b"Exif\x00\x00"


class MetadataDroppedWarning(UserWarning):
    """Metadata the output format cannot hold was dropped or clamped (reported, never fatal)."""


@dataclass(frozen=True)
class Meta:
    """The metadata one output file gets; None where it gets none."""

    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None


def output_meta(like: LoadedImage | None, fmt: ImageFormat, width: int, gray: bool, strip: bool) -> Meta:
    """ICC/EXIF/dpi from the source ``like``, only what ``fmt`` stores and the pixels match.

    ``gray`` says whether the written samples are gray (an ICC profile must describe the output's
    colour space); dpi is scaled by the output ``width`` so the print size stays the same.
    """
    if like is None or strip:
        return Meta()
    icc = like.icc_profile if fmt.icc else None
    if icc and icc_space(icc) != ("GRAY" if gray else "RGB"):
        icc = None  # e.g. a gray profile on an RGB output would be invalid
    exif = like.exif if fmt.exif else None
    if exif and fmt.max_exif is not None and len(exif) > fmt.max_exif:
        warnings.warn(
            f"EXIF dropped: {len(exif)} bytes, more than {fmt.name} can carry ({fmt.max_exif})",
            MetadataDroppedWarning,
            stacklevel=2,
        )
        exif = None
    dpi = None
    if like.dpi and fmt.dpi:
        ratio = width / max(1, like.size[0])
        dpi = (like.dpi[0] * ratio, like.dpi[1] * ratio)
        if fmt.max_dpi is not None and max(dpi) > fmt.max_dpi:
            warnings.warn(
                f"dpi {max(dpi):g} clamped to {fmt.max_dpi:g}, the most {fmt.name} can store",
                MetadataDroppedWarning,
                stacklevel=2,
            )
            dpi = (min(dpi[0], fmt.max_dpi), min(dpi[1], fmt.max_dpi))
    return Meta(icc, exif, dpi)


# ---- ICC and dpi -------------------------------------------------------------------------------


def icc_space(icc: bytes) -> str | None:
    """The data colour space field of an ICC header ("RGB", "GRAY", "CMYK"...), if it has one."""
    if len(icc) < 128:
        return None
    return icc[16:20].decode("ascii", "replace").strip()


@functools.cache
def srgb_icc() -> bytes | None:
    """sRGB profile bytes, to tag CMYK files converted to sRGB."""
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except Exception:
        return None


def clean_dpi(dpi: object) -> tuple[float, float] | None:
    """Keep a usable (x, y) dpi; drop the 0 or 1 placeholders many writers leave."""
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    usable = x > 1 and y > 1 and np.isfinite(x) and np.isfinite(y)  # Pillow's TIFF default is 1
    return (x, y) if usable else None


# libjpeg's base luminance table (quality 50): quality q scales it by 5000/q below 50 and by
# 200 - 2q above, which estimate_jpeg_quality inverts.
_BASE_LUMA_MEAN = float(
    np.mean(
        [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56]
        + [14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104]
        + [113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
    )
)


def estimate_jpeg_quality(im: Image.Image) -> int | None:
    """The IJG quality (1-100) a JPEG was most likely saved at, from its luminance table.

    Below about 80 the 8x8 blocking is visible at x4, which the engine warns about.
    """
    tables = getattr(im, "quantization", None)
    if im.format != "JPEG" or not tables or 0 not in tables:
        return None
    scale = 100.0 * float(np.mean(list(tables[0]))) / _BASE_LUMA_MEAN
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2.0
    return int(round(min(100.0, max(1.0, quality))))


# ---- EXIF ------------------------------------------------------------------------------------


def orientation(im: Image.Image) -> int:
    """EXIF Orientation (1 to 8), 1 when absent or unreadable.

    Must be asked before ``load()`` for TIFF: Pillow rotates TIFFs while loading and drops the tag.
    """
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def upright_exif(raw: bytes | None) -> bytes | None:
    """EXIF with Orientation set to 1, since the pixels are now upright.

    The tag is patched in place so everything else (maker notes with absolute offsets included)
    stays byte-identical; only if that fails is Pillow's re-serialisation used. Unparseable EXIF
    is dropped rather than copied into outputs.
    """
    if not raw:
        return None
    data = raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw
    patched = _patch_orientation(data)
    if patched is not None:
        return patched
    try:
        exif = Image.Exif()
        exif.load(data)
        exif[ORIENTATION_TAG] = 1
        return exif.tobytes()
    except Exception:
        return None


def _patch_orientation(data: bytes) -> bytes | None:
    """Set IFD0's Orientation to 1 in place; the data unchanged if absent; None if unparseable."""
    tiff = data[len(EXIF_HEADER) :]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return None
        tag, typ, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == ORIENTATION_TAG:
            if typ != 3 or n != 1:  # not a single SHORT: let Pillow rewrite it
                return None
            out = bytearray(data)
            struct.pack_into(order + "H", out, len(EXIF_HEADER) + entry + 8, 1)
            return bytes(out)
    return data


_TIFF_EXIF_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, ... copyright
EXIF_SUB_IFDS = (0x8769, 0x8825)
"""The Exif and GPS sub-directories, the part of EXIF that is about the photo, not the file."""


def tiff_exif(im: Image.Image) -> bytes | None:
    """EXIF for a TIFF source, which has no EXIF block: its tags live in the image directory.

    Only descriptive IFD0 tags and the Exif/GPS sub-directories are taken; the rest of that
    directory (strip offsets, sample layout...) describes this file's pixels, not the photo.
    Orientation is left out: Pillow already applied and removed it while loading.
    """
    if im.format != "TIFF":
        return None
    try:
        src = im.getexif()
        out = Image.Exif()
        for tag in _TIFF_EXIF_TAGS:
            if tag in src:
                out[tag] = src[tag]
        for group in EXIF_SUB_IFDS:
            if sub := src.get_ifd(group):
                out.get_ifd(group).update(sub)
        return out.tobytes() if len(out) or any(out.get_ifd(g) for g in EXIF_SUB_IFDS) else None
    except Exception:
        return None
