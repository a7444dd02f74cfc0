"""16-bit colour PNG output, which Pillow cannot write.

Pillow has no 16-bit RGB(A) mode (``Image.fromarray`` refuses HxWx3 uint16, checked by the canary
test in ``tests/test_images.py``), so OpenCV encodes the pixels and the metadata chunks OpenCV does
not write (iCCP, pHYs, eXIf) are spliced in after IHDR, where the PNG spec wants them: before
the image data. Chunks are length + type + data + CRC-32, nothing more.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from .metadata import EXIF_HEADER, Meta

__all__ = ["encode_png16"]

_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC


def encode_png16(u16: np.ndarray, meta: Meta) -> bytes:
    """A 16-bit RGB or RGBA (HxWx3 or HxWx4 uint16, RGB order) PNG carrying ``meta``."""
    bgr = u16[..., [2, 1, 0, 3]] if u16.shape[2] == 4 else u16[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise OSError("OpenCV could not encode a 16-bit PNG")
    png = buf.tobytes()
    return png[:_IHDR_END] + _meta_chunks(meta) + png[_IHDR_END:]


def _meta_chunks(meta: Meta) -> bytes:
    """iCCP (zlib-compressed profile), pHYs (pixels per metre) and eXIf (EXIF without its header)."""
    extra = b""
    if meta.icc:
        extra += _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc))
    if meta.dpi:
        ppm = [max(1, round(v / 0.0254)) for v in meta.dpi]
        extra += _chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))
    if meta.exif:
        body = meta.exif[len(EXIF_HEADER) :] if meta.exif.startswith(EXIF_HEADER) else meta.exif
        extra += _chunk(b"eXIf", body)
    return extra


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
