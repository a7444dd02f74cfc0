"""TIFF output of every kind (8/16-bit integer or 32-bit float; gray, gray+alpha, RGB, RGBA).

``tifffile`` writes the pixels (deflate, with the horizontal predictor for integers), the ICC
profile and the resolution. Pillow is not used: it cannot write 16-bit colour, and its libtiff
(compressed) path fails on EXIF that has sub-directories ("Error setting from dictionary").

EXIF is the one thing tifffile cannot write (its ``extratags`` refuse IFD-typed tags such as the
Exif and GPS pointers), so :func:`_merge_exif` adds it afterwards: Pillow serialises the EXIF as
a TIFF directory (sub-directories included) appended to the file, and a new first directory,
tifffile's entries plus the EXIF ones, is appended after it and made the file's first. Nothing
tifffile wrote moves, so every offset in it stays valid.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import tifffile
from PIL import Image, TiffTags
from PIL.TiffImagePlugin import ImageFileDirectory_v2

from .metadata import Meta

__all__ = ["encode_tiff"]

_ENTRY = struct.Struct("<HHI4s")  # tag, type, count, value or offset: one classic TIFF entry

_PIXEL_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 273, 277, 278, 279, 282, 283, 284, 296})
_PIXEL_TAGS |= {317, 322, 323, 324, 325, 338, 339, 34675, 513, 514}
"""Tags that describe this file's pixels: never taken from the source's EXIF."""

_INTEROP = 0xA005  # the Interoperability directory, a pointer inside the Exif one


def encode_tiff(samples: np.ndarray, meta: Meta) -> bytes:
    """A deflated TIFF of ``samples`` (HxW or HxWxC, C = 2 or 4 meaning unassociated alpha).

    If the source EXIF cannot be serialised it is left out rather than failing the save.
    """
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    options: dict[str, object] = {
        "photometric": "minisblack" if channels <= 2 else "rgb",
        "compression": "zlib",
        "compressionargs": {"level": 6},
        "predictor": samples.dtype.kind == "u",  # horizontal differencing; none for float
        "metadata": None,  # no tifffile JSON in ImageDescription
        "software": False,
    }
    if samples.ndim == 3:
        options["planarconfig"] = "contig"
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)  # straight alpha, not premultiplied
    if meta.dpi:
        options["resolution"] = (float(meta.dpi[0]), float(meta.dpi[1]))
        options["resolutionunit"] = "inch"
    if meta.icc:
        options["iccprofile"] = meta.icc
    out = io.BytesIO()
    tifffile.imwrite(out, np.ascontiguousarray(samples), byteorder="<", **options)  # type: ignore[arg-type]
    tiff = out.getvalue()
    if meta.exif:
        try:
            return _merge_exif(tiff, meta.exif)
        except Exception:
            return tiff
    return tiff


def _merge_exif(tiff: bytes, exif_bytes: bytes) -> bytes:
    """``tiff`` (little-endian, classic, one directory) with the EXIF's tags added to it."""
    if tiff[:4] != b"II*\x00":
        return tiff  # BigTIFF (over 4 GB): no room in 32-bit offsets for this splice
    exif_dir = _exif_directory(exif_bytes)
    if not len(exif_dir):
        return tiff
    (first,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, first)
    own = _entries(tiff, first + 2, count)
    base = _word_aligned(len(tiff))
    blob = exif_dir.tobytes(base)
    (n_exif,) = struct.unpack_from("<H", blob, 0)
    taken = {e[0] for e in own}
    added = [e for e in _entries(blob, 2, n_exif) if e[0] not in taken]
    merged = sorted(own + added, key=lambda e: e[0])
    new_first = _word_aligned(base + len(blob))
    directory = struct.pack("<H", len(merged)) + b"".join(_ENTRY.pack(*e) for e in merged)
    directory += struct.pack("<I", 0)  # no next directory: one image
    body = tiff.ljust(base, b"\x00") + blob
    out = bytearray(body.ljust(new_first, b"\x00") + directory)
    struct.pack_into("<I", out, 4, new_first)
    return bytes(out)


def _exif_directory(exif_bytes: bytes) -> ImageFileDirectory_v2:
    """The EXIF's IFD0 tags and sub-directories, minus anything that describes pixels."""
    exif = Image.Exif()
    exif.load(exif_bytes)
    ifd = ImageFileDirectory_v2(prefix=b"II")
    for tag in list(exif):
        if tag in _PIXEL_TAGS:
            continue
        if tag in TiffTags.TAGS_V2_GROUPS:
            ifd[tag] = _sub_directory(exif, tag)
        else:
            ifd[tag] = exif[tag]
    return ifd


def _sub_directory(exif: Image.Exif, group: int) -> dict[int, object]:
    """A sub-directory as a dict, its own Interop pointer resolved: a bare offset would be stale."""
    sub = dict(exif.get_ifd(group))
    if _INTEROP in sub:
        interop = dict(exif.get_ifd(_INTEROP))
        if interop:
            sub[_INTEROP] = interop
        else:
            del sub[_INTEROP]
    return sub


def _entries(data: bytes, start: int, count: int) -> list[tuple[int, int, int, bytes]]:
    return [_ENTRY.unpack_from(data, start + 12 * i) for i in range(count)]


def _word_aligned(offset: int) -> int:
    """TIFF wants directories (and values) to start on an even byte."""
    return offset + (offset & 1)
