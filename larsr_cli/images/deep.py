"""16-bit colour PNG and TIFF, which Pillow (13) opens as 8-bit: decoded again by OpenCV.

Pillow keeps only the high byte of 16-bit RGB(A) files (and opens 16-bit gray+alpha PNG as 8-bit
RGBA), so those files are decoded a second time with OpenCV to keep all 16 bits. The EXIF
orientation, already read from the file, is then applied to OpenCV's pixels the way Pillow's
``ImageOps.exif_transpose`` would (:func:`.pixels.orient`).

Whether OpenCV has already turned the pixels upright itself differs by format and version
(OpenCV 5 rotates TIFFs even with ``IMREAD_IGNORE_ORIENTATION``, and leaves PNG eXIf alone), so it
is not guessed: :func:`_opencv_turns` asks the installed OpenCV once per format and orientation,
with a tiny file of known pixels. Pillow's 8-bit decode is kept as a check that OpenCV read the
same picture (its high bytes must match); when it did not, the caller keeps Pillow's 8 bits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .loaded import LoadedImage
from .metadata import ORIENTATION_TAG, Meta
from .pixels import orient, to_unit
from .png16 import encode_png16
from .tiff import encode_tiff

__all__ = ["decode_deep_colour", "deep_colour_rawmode"]


def deep_colour_rawmode(im: Image.Image) -> str | None:
    """The 16-bit raw mode Pillow will squeeze into 8-bit RGB(A), e.g. "RGB;16B" or "LA;16B".

    Must be asked before ``load()``, which discards the tile list.
    """
    if im.mode not in ("RGB", "RGBA"):
        return None
    for tile in getattr(im, "tile", ()):  # ImageFile's decoder list; typed only on ImageFile
        args = tile.args
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return rawmode
    return None


def decode_deep_colour(
    upright8: Image.Image, raw: Path | bytes, rawmode: str, orientation: int
) -> LoadedImage | None:
    """All 16 bits of the file in ``raw``, upright; None if OpenCV cannot be trusted with it.

    ``upright8`` is Pillow's decode of the same file, already upright; ``orientation`` the EXIF
    Orientation the file was stored with.
    """
    buf = np.fromfile(raw, dtype=np.uint8) if isinstance(raw, Path) else np.frombuffer(raw, np.uint8)
    decoded = _opencv_rgb16(buf)
    fmt = upright8.format or ""
    turns = _opencv_turns(fmt, orientation)
    if decoded is None or turns is None:
        return None
    upright = decoded if turns else orient(decoded, orientation)
    if not _same_picture(upright, np.asarray(upright8)):
        return None
    gray = rawmode.startswith("LA")  # Pillow 13 opens 16-bit gray+alpha PNG as RGBA
    alpha = to_unit(upright[..., 3], 65535) if upright.shape[2] == 4 else None
    rgb = to_unit(upright[..., :3], 65535)
    mode = "LA;16" if gray else ("RGBA;16" if alpha is not None else "RGB;16")
    return LoadedImage(rgb=rgb, alpha=alpha, mode=mode, bit_depth=16, grayscale=gray)


def _opencv_rgb16(buf: np.ndarray) -> np.ndarray | None:
    """OpenCV's decode as RGB(A) uint16, or None if it is not 16-bit colour."""
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    return arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]


def _same_picture(upright16: np.ndarray, ref8: np.ndarray) -> bool:
    """Whether the high bytes of the 16-bit pixels are Pillow's 8-bit ones (sampled, for speed)."""
    if ref8.shape != upright16.shape:
        return False
    step = max(1, int(np.sqrt(ref8.shape[0] * ref8.shape[1] / 65536)))
    high = (upright16[::step, ::step] >> 8).astype(np.int16)
    return float(np.abs(high - ref8[::step, ::step].astype(np.int16)).mean()) < 1.0


@functools.cache
def _opencv_turns(fmt: str, orientation: int) -> bool | None:
    """Whether this OpenCV turns a ``fmt`` file stored with ``orientation`` upright by itself.

    False: it returns the pixels as stored (we orient them); None: neither, so it is not used.
    Found by decoding a 2x3 picture with distinct pixels written by our own encoder.
    """
    if orientation == 1:
        return False
    stored = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    meta = Meta(exif=exif.tobytes())
    if fmt == "PNG":
        data = encode_png16(stored, meta)
    elif fmt == "TIFF":
        data = encode_tiff(stored, meta)
    else:
        return None
    decoded = _opencv_rgb16(np.frombuffer(data, np.uint8))
    if decoded is None:
        return None
    for turns, expected in ((False, stored), (True, orient(stored, orientation))):
        if decoded.shape == expected.shape and np.array_equal(decoded, expected):
            return turns
    return None
