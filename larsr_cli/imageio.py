"""Image input/output: real-world files <-> the float32 RGB arrays the upscaler works on.

The model only ever sees an upright HxWx3 float32 array in [0, 1]. Everything that makes real
photos awkward (alpha, grayscale, palettes, CMYK, 16-bit and float samples, EXIF orientation,
ICC profiles) is peeled off here on the way in, remembered in :class:`LoadedImage`, and put back
on the way out by :func:`save_image`, so the output is the same *kind* of file as the input.

Pillow quirks this module works around (Pillow 13):

* 16-bit RGB/RGBA PNGs and TIFFs open as 8-bit ``RGB``/``RGBA`` (Pillow keeps only the high
  byte), and 16-bit gray+alpha PNGs open as 8-bit ``RGBA``. Those files are decoded a second time
  with OpenCV to keep all 16 bits; Pillow's 8-bit decode still runs, to catch truncation and to
  serve as the reference for orientation.
* Pillow cannot write 16-bit colour at all, so 16-bit RGB(A) PNGs are encoded by OpenCV (with
  iCCP/pHYs/eXIf chunks spliced in) and TIFFs of every kind by a small writer here, which also
  sidesteps Pillow's libtiff writer failing on EXIF that has sub-directories ("Error setting
  from dictionary").
* TIFFs are rotated upright by Pillow itself while loading (and their Orientation tag dropped),
  whereas JPEG/PNG/WebP need ``ImageOps.exif_transpose``; applying it after ``load()`` is right
  for both.
* Pillow 13 cannot write mode ``I`` as PNG; 16-bit gray is written as ``I;16``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from larsr_cli.atomic import atomic_write, exists_message, os_reason
from larsr_cli.errors import ImageError

__all__ = [
    "AlphaFlattenedWarning",
    "FORMAT_SUFFIXES",
    "LoadedImage",
    "encode_image",
    "load_image",
    "resize_float",
    "resolve_format",
    "save_bytes",
    "save_image",
]

ORIENTATION_TAG = 0x0112
EXIF_HEADER = b"Exif\x00\x00"

# The decoders larsr lets Pillow run, whatever a file's name says: raster photo formats only.
# Without it an EPS named photo.png makes Pillow call Ghostscript, and rarely used decoders widen
# what a hostile file can reach.
READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")

FORMAT_SUFFIXES: dict[str, str] = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
}
"""Output formats we write, with the suffix to give new files."""

_FORMAT_ALIASES = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "webp": "WEBP",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bmp": "BMP",
}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
_DEEP_FORMATS = frozenset({"PNG", "TIFF"})
_DPI_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "BMP"})
_ICC_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})
_EXIF_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})
DEFAULT_QUALITY = 95

_GRAY_MODES = frozenset({"1", "L", "LA", "La"})
_RGB_MODES = frozenset({"RGB", "RGBX", "YCbCr", "HSV", "LAB"})
_RGBA_MODES = frozenset({"RGBA", "RGBa", "PA"})
_U16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


class AlphaFlattenedWarning(UserWarning):
    """Alpha was composited onto white because the output format (JPEG, BMP) cannot store it."""


@dataclass
class LoadedImage:
    """An upright image as float arrays plus everything needed to write the same kind of file.

    ``mode`` is the source's PIL mode; for 16-bit colour files that Pillow can only open as
    8-bit, it is ``"RGB;16"``, ``"RGBA;16"`` or ``"LA;16"`` instead. ``bit_depth`` is 16 for any
    source with more than 8 bits per sample (16-bit integer, 32-bit integer ``I``, float ``F``).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None
    dpi: tuple[float, float] | None = None
    jpeg_quality: int | None = None  # estimated from the quantisation tables, JPEG sources only

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), PIL's order, of the upright image."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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
    failure a user can cause raises :class:`ImageError` with one line naming the file. Only the
    first frame of animated or multi-page files is read.
    """
    label = name or _label(source)
    openable, raw = _openable(source, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(openable, formats=READABLE_FORMATS) as im:
                _check_pixels(im, max_pixels, label)
                return _decode(im, raw, label)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a possible decompression bomb: {_one_line(exc)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image (unknown or unsupported file format)") from exc
    except MemoryError as exc:
        raise ImageError(f"{label}: not enough memory to decode this image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as exc:
        raise ImageError(f"{label}: truncated or corrupt image ({_one_line(exc)})") from exc


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
    """The IJG quality (1-100) a JPEG was most likely saved at, from its luminance table."""
    tables = getattr(im, "quantization", None)
    if im.format != "JPEG" or not tables or 0 not in tables:
        return None
    scale = 100.0 * float(np.mean(list(tables[0]))) / _BASE_LUMA_MEAN
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2.0
    return int(round(min(100.0, max(1.0, quality))))


def _decode(im: Image.Image, raw: Path | bytes, label: str) -> LoadedImage:
    """Fully decode (so truncation shows up now, not mid-upscale), orient, and split channels."""
    loaded = _decode_pixels(im, raw, label)
    return dataclasses.replace(loaded, jpeg_quality=estimate_jpeg_quality(im))


def _decode_pixels(im: Image.Image, raw: Path | bytes, label: str) -> LoadedImage:
    deep_rawmode = _deep_colour_rawmode(im)
    source_mode = im.mode
    orientation = _orientation(im)  # TIFF drops the tag in load(), so read it first
    im.load()
    icc = im.info.get("icc_profile") or None
    exif = _upright_exif(im.info["exif"]) if "exif" in im.info else _tiff_exif(im)
    dpi = _clean_dpi(im.info.get("dpi"))
    _exif_transpose(im)
    if deep_rawmode:
        expected = 0 if im.format == "TIFF" else _EXIF_TO_VIEW.get(orientation, 0)
        loaded = _decode_deep_colour(im, raw, deep_rawmode, expected)
        if loaded is not None:
            return _with_meta(loaded, icc, exif, dpi, im.format)
    rgb, alpha, depth, gray, icc = _split_pil(im, icc, label)
    loaded = LoadedImage(rgb=rgb, alpha=alpha, mode=source_mode, bit_depth=depth, grayscale=gray)
    return _with_meta(loaded, icc, exif, dpi, im.format)


def pil_arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour and alpha of an in-memory PIL image, upright and converted exactly as a file of the
    same mode would be (16-bit, CMYK with its ICC profile, palette transparency)."""
    im = im.copy()
    _exif_transpose(im)
    rgb, alpha, *_ = _split_pil(im, im.info.get("icc_profile") or None, "image")
    return rgb, alpha


def _exif_transpose(im: Image.Image) -> None:
    """Rotate upright in place; malformed EXIF must not make an otherwise fine photo unreadable."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except (SyntaxError, ValueError, TypeError, KeyError, struct.error):
        pass


def _with_meta(
    loaded: LoadedImage,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    fmt: str | None,
) -> LoadedImage:
    loaded.icc_profile, loaded.exif, loaded.dpi, loaded.format = icc, exif, dpi, fmt
    return loaded


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
        return _gray_to_rgb(_scale(gray, 255)), _scale_opt(alpha, 255), 8, True, icc
    if mode in _U16_MODES:
        return _gray_to_rgb(_scale(np.asarray(im), 65535)), None, 16, True, icc
    if mode == "I":
        return _gray_to_rgb(_scale(np.clip(np.asarray(im), 0, 65535), 65535)), None, 16, True, icc
    if mode == "F":
        return _gray_to_rgb(_unit_float(np.asarray(im))), None, 16, True, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        return _scale(np.asarray(im), 255), None, 8, False, icc
    if mode == "P":
        mode = "RGBA" if im.has_transparency_data else "RGB"
    if mode in _RGB_MODES or mode in _RGBA_MODES:
        target = "RGBA" if mode in _RGBA_MODES else "RGB"
        arr = np.asarray(im if im.mode == target else im.convert(target))
        return (
            _scale(arr[..., :3], 255),
            _scale_opt(arr[..., 3] if target == "RGBA" else None, 255),
            8,
            False,
            icc,
        )
    raise ImageError(f"{label}: unsupported image mode {im.mode}")


def _scale(arr: np.ndarray, maxval: float) -> np.ndarray:
    """Integer samples to contiguous float32 in [0, 1]."""
    out = np.ascontiguousarray(arr, dtype=np.float32)
    out *= np.float32(1.0 / maxval)
    return out


def _scale_opt(arr: np.ndarray | None, maxval: float) -> np.ndarray | None:
    return None if arr is None else _scale(arr, maxval)


def _unit_float(arr: np.ndarray) -> np.ndarray:
    """Float samples are taken as already in [0, 1]; HDR values above 1 are clipped."""
    out = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """The model is RGB-only: replicate the gray channel (a real copy, the core may write in place)."""
    return np.repeat(gray[..., None], 3, axis=2)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Colour-manage CMYK to sRGB when the file has a CMYK profile; else Pillow's naive formula.

    Either way the CMYK profile must not be carried: it would describe the wrong colour space.
    """
    if icc and _icc_space(icc) == "CMYK":
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted, _srgb_icc()
        except Exception:  # missing lcms, or a profile lcms rejects: fall back, still usable
            pass
    return im.convert("RGB"), None


@functools.cache
def _srgb_icc() -> bytes | None:
    """sRGB profile bytes, to tag CMYK files converted to sRGB."""
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except Exception:
        return None


def _icc_space(icc: bytes) -> str | None:
    """The data colour space field of an ICC header ("RGB", "GRAY", "CMYK"...), if it has one."""
    if len(icc) < 128:
        return None
    return icc[16:20].decode("ascii", "replace").strip()


def _clean_dpi(dpi: object) -> tuple[float, float] | None:
    """Keep a usable (x, y) dpi; drop the 0 or 1 placeholders many writers leave."""
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    usable = x > 1 and y > 1 and np.isfinite(x) and np.isfinite(y)  # Pillow's TIFF default is 1
    return (x, y) if usable else None


# ---- EXIF ------------------------------------------------------------------------------------


def _upright_exif(raw: bytes | None) -> bytes | None:
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


_TIFF_EXIF_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, ... copyright
_EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif and GPS directories


def _tiff_exif(im: Image.Image) -> bytes | None:
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
        for group in _EXIF_SUB_IFDS:
            if sub := src.get_ifd(group):
                out.get_ifd(group).update(sub)
        return out.tobytes() if len(out) or any(out.get_ifd(g) for g in _EXIF_SUB_IFDS) else None
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


# ---- 16-bit colour via OpenCV -----------------------------------------------------------------


def _deep_colour_rawmode(im: Image.Image) -> str | None:
    """The 16-bit raw mode Pillow will squeeze into 8-bit RGB(A), e.g. "RGB;16B" or "LA;16B".

    Must be asked before ``load()``, which discards the tile list.
    """
    if im.mode not in ("RGB", "RGBA"):
        return None
    for tile in im.tile:
        args = tile.args
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return rawmode
    return None


def _decode_deep_colour(
    ref: Image.Image, raw: Path | bytes, rawmode: str, expected: int
) -> LoadedImage | None:
    """Re-decode with OpenCV to keep 16 bits; None (use Pillow's 8 bits) if that cannot be trusted.

    OpenCV's handling of orientation differs by format and version (it rotates TIFFs itself,
    ignores PNG eXIf), so rather than guess, the upright 8-bit Pillow decode ``ref`` is used as
    ground truth: of the 8 flips/rotations of OpenCV's pixels, the one whose high bytes match
    ``ref`` is taken. No match means OpenCV decoded something else, and we fall back. When
    several match (e.g. a dark image whose high bytes are all 0), the ``expected`` view wins: the
    one today's OpenCV needs (index into :func:`_dihedral`).
    """
    buf = np.fromfile(raw, dtype=np.uint8) if isinstance(raw, Path) else np.frombuffer(raw, np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    ref_arr = np.asarray(ref)
    if ref_arr.ndim != 3 or ref_arr.shape[2] != arr.shape[2]:
        return None
    upright = _align_to(arr, ref_arr, expected)
    if upright is None:
        return None
    gray = rawmode.startswith("LA")  # Pillow 13 opens 16-bit gray+alpha PNG as RGBA
    alpha = _scale(upright[..., 3], 65535) if upright.shape[2] == 4 else None
    rgb = _scale(upright[..., :3], 65535)
    mode = "LA;16" if gray else ("RGBA;16" if alpha is not None else "RGB;16")
    return LoadedImage(rgb=rgb, alpha=alpha, mode=mode, bit_depth=16, grayscale=gray)


def _orientation(im: Image.Image) -> int:
    """EXIF Orientation (1 to 8), 1 when absent or unreadable."""
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


_EXIF_TO_VIEW = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7}
"""EXIF Orientation -> the :func:`_dihedral` view that makes the stored pixels upright."""


def _dihedral(arr: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of an image, as views, ordered to match ``_EXIF_TO_VIEW``."""
    t = arr.swapaxes(0, 1)
    return [arr, arr[:, ::-1], arr[::-1, ::-1], arr[::-1], t, t[:, ::-1], t[::-1, ::-1], t[::-1]]


def _align_to(arr16: np.ndarray, ref8: np.ndarray, expected: int) -> np.ndarray | None:
    """The view of ``arr16`` whose high bytes equal ``ref8`` (sampled, for speed), or None.

    ``expected`` is tried first and kept on ties.
    """
    step = max(1, int(np.sqrt(ref8.shape[0] * ref8.shape[1] / 65536)))
    ref = ref8[::step, ::step].astype(np.int16)
    views = _dihedral(arr16)
    order = [expected] + [i for i in range(len(views)) if i != expected]
    best, best_err = None, 1.0
    for i in order:
        view = views[i]
        if view.shape != ref8.shape:
            continue
        err = float(np.abs((view[::step, ::step] >> 8).astype(np.int16) - ref).mean())
        if err < best_err or (best is None and err <= best_err):
            best, best_err = view, err
    return best


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What to write: Pillow format name, sample layout and depth (8, 16, or 32 = float)."""

    fmt: str
    gray: bool
    depth: int


@dataclass(frozen=True)
class _Meta:
    icc: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None


def resolve_format(format: str | None = None, path: str | os.PathLike[str] | None = None) -> str:
    """Pillow format name from an explicit ``--format`` or else the output suffix."""
    key = format if format else (Path(path).suffix if path is not None else "")
    fmt = _FORMAT_ALIASES.get(key.lower().lstrip("."))
    if fmt is None:
        what = f"format '{format}'" if format else f"output suffix '{key}' of {path}"
        raise ImageError(f"unsupported {what}; use png, jpg, webp, tiff or bmp")
    return fmt


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
    fmt = resolve_format(format, path)
    if not overwrite and os.path.lexists(path):
        raise ImageError(exists_message(path))
    pixels, target = _prepare(rgb, alpha, like, fmt)
    meta = _metadata(like, pixels, target, strip_metadata)
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
        source_fmt = like.format if like is not None else None
        format = source_fmt if source_fmt in FORMAT_SUFFIXES else "png"
    fmt = resolve_format(format)
    pixels, target = _prepare(rgb, alpha, like, fmt)
    meta = _metadata(like, pixels, target, strip_metadata)
    out = io.BytesIO()
    try:
        _encode_into(out, pixels, target, meta, quality)
    except OSError as exc:
        raise ImageError(f"cannot encode image as {fmt}: {_one_line(exc)}") from exc
    return out.getvalue()


save_bytes = encode_image
"""Alias of :func:`encode_image`."""


def _prepare(
    rgb: np.ndarray, alpha: np.ndarray | None, like: LoadedImage | None, fmt: str
) -> tuple[np.ndarray, _Target]:
    """Float pixels in the output's channel layout (L, LA, RGB or RGBA) and how to store them."""
    colour = _check_rgb(rgb)
    alpha = _check_alpha(alpha, colour.shape[:2])
    gray = like.grayscale if like is not None else colour.ndim == 2
    gray = gray and fmt != "WEBP"  # WebP has no grayscale
    depth = _depth(like, fmt, gray, alpha is not None)
    integer_ok = alpha is None and not gray and colour.ndim == 3 and colour.dtype == _DEPTH_DTYPE.get(depth)
    if colour.dtype != np.float32 and not integer_ok:
        colour = colour.astype(np.float32) / np.float32(np.iinfo(colour.dtype).max)
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        colour = _flatten_on_white(colour, alpha, fmt)
        alpha = None
    colour = _to_gray(colour) if gray else _to_colour(colour)
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


_DEPTH_DTYPE = {8: np.uint8, 16: np.uint16}


def _check_alpha(alpha: np.ndarray | None, hw: tuple[int, ...]) -> np.ndarray | None:
    if alpha is None:
        return None
    arr = np.asarray(alpha, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(hw):
        raise ValueError(f"alpha shape {np.shape(alpha)} does not match image size {tuple(hw)}")
    return arr


def _flatten_on_white(colour: np.ndarray, alpha: np.ndarray, fmt: str) -> np.ndarray:
    """Composite onto white, the usual page/background colour, instead of failing the batch."""
    warnings.warn(
        f"{fmt} cannot store transparency; alpha was flattened onto white (use png to keep it)",
        AlphaFlattenedWarning,
        stacklevel=4,
    )
    a = np.clip(alpha, 0.0, 1.0)
    a = a if colour.ndim == 2 else a[..., None]
    return colour * a + (1.0 - a)


def _to_gray(colour: np.ndarray) -> np.ndarray:
    """Luma of the model's RGB output for a grayscale source (channels differ only slightly)."""
    return colour if colour.ndim == 2 else colour @ _LUMA


def _to_colour(colour: np.ndarray) -> np.ndarray:
    return _gray_to_rgb(colour) if colour.ndim == 2 else colour


def _depth(like: LoadedImage | None, fmt: str, gray: bool, has_alpha: bool) -> int:
    """16 bits where both the source had them and the format can hold them; float for float TIFF."""
    if like is None or like.bit_depth < 16 or fmt not in _DEEP_FORMATS:
        return 8
    if like.mode == "F" and fmt == "TIFF" and gray and not has_alpha:
        return 32
    return 16


def _metadata(like: LoadedImage | None, pixels: np.ndarray, target: _Target, strip: bool) -> _Meta:
    """ICC/EXIF/dpi from the source, only what the format stores and the pixels match."""
    if like is None or strip:
        return _Meta(None, None, None)
    icc = like.icc_profile if target.fmt in _ICC_FORMATS else None
    gray_out = pixels.ndim == 2 or (pixels.shape[2] == 2 and target.depth == 8)  # LA;16 -> RGBA
    if icc and _icc_space(icc) != ("GRAY" if gray_out else "RGB"):
        icc = None  # e.g. a gray profile on an RGB output would be invalid
    exif = like.exif if target.fmt in _EXIF_FORMATS else None
    dpi = None
    if like.dpi and target.fmt in _DPI_FORMATS:
        ratio = pixels.shape[1] / max(1, like.size[0])
        dpi = (like.dpi[0] * ratio, like.dpi[1] * ratio)
    return _Meta(icc, exif, dpi)


def quantise(pixels: np.ndarray, dtype: type) -> np.ndarray:
    """Float [0, 1] to rounded integers (NaN becomes 0 rather than garbage); float dtypes are
    clipped to [0, 1]. The one rounding rule for tiles, alpha and files."""
    if not np.issubdtype(dtype, np.integer):
        return np.clip(pixels, 0.0, 1.0).astype(dtype, copy=False)
    if pixels.dtype == dtype:
        return pixels
    maxval = float(np.iinfo(dtype).max)
    out = pixels * np.float32(maxval)
    out += np.float32(0.5)
    np.clip(out, 0.0, maxval, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(dtype)


def _encode_into(
    fp: IO[bytes], pixels: np.ndarray, target: _Target, meta: _Meta, quality: int | None
) -> None:
    """Pillow for most; OpenCV for 16-bit colour PNG; our own writer for every TIFF.

    TIFF goes through our writer because Pillow cannot write 16-bit colour and its libtiff
    (compressed) path fails on EXIF with sub-directories ("Error setting from dictionary").
    """
    if target.fmt == "TIFF":
        fp.write(_encode_tiff(_tiff_samples(pixels, target.depth), meta))
        return
    if target.depth == 16 and pixels.ndim == 3:
        fp.write(_encode_png16(quantise(_gray_alpha_to_rgba(pixels), np.uint16), meta))
        return
    image = _to_pil(pixels, target)
    image.save(fp, format=target.fmt, **_pillow_params(target.fmt, meta, quality))


def _gray_alpha_to_rgba(pixels: np.ndarray) -> np.ndarray:
    """16-bit gray+alpha is stored as 16-bit RGBA: neither OpenCV nor Pillow handles LA;16."""
    if pixels.ndim != 3 or pixels.shape[2] != 2:
        return pixels
    g, a = pixels[..., 0], pixels[..., 1]
    return np.stack([g, g, g, a], axis=2)


def _tiff_samples(pixels: np.ndarray, depth: int) -> np.ndarray:
    if depth == 32:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    if depth == 16:
        return quantise(_gray_alpha_to_rgba(pixels), np.uint16)
    return quantise(pixels, np.uint8)


def _to_pil(pixels: np.ndarray, target: _Target) -> Image.Image:
    if target.depth == 32:
        return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))  # mode F
    if target.depth == 16:
        return Image.fromarray(quantise(pixels, np.uint16))  # 2-D only here: mode I;16
    return Image.fromarray(quantise(pixels, np.uint8))  # L, LA, RGB or RGBA by shape


def _pillow_params(fmt: str, meta: _Meta, quality: int | None) -> dict[str, object]:
    """Encoder options per format; metadata is passed only where present."""
    params: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = DEFAULT_QUALITY if quality is None else int(quality)
    if fmt == "JPEG" and int(params["quality"]) >= 90:  # type: ignore[call-overload]
        params["subsampling"] = 0  # 4:4:4: do not halve the chroma we just upscaled
    if meta.icc:
        params["icc_profile"] = meta.icc
    if meta.exif:
        params["exif"] = meta.exif
    if meta.dpi:
        params["dpi"] = tuple(round(v) for v in meta.dpi) if fmt == "JPEG" else meta.dpi
    return params


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png16(u16: np.ndarray, meta: _Meta) -> bytes:
    """16-bit colour PNG via OpenCV, with our metadata chunks spliced in after IHDR."""
    bgr = u16[..., [2, 1, 0, 3]] if u16.shape[2] == 4 else u16[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise OSError("OpenCV could not encode a 16-bit PNG")
    png = buf.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4
    extra = b""
    if meta.icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc))
    if meta.dpi:
        ppm = [max(1, round(v / 0.0254)) for v in meta.dpi]
        extra += _png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))
    if meta.exif:
        body = meta.exif[len(EXIF_HEADER) :] if meta.exif.startswith(EXIF_HEADER) else meta.exif
        extra += _png_chunk(b"eXIf", body)
    return png[:ihdr_end] + extra + png[ihdr_end:]


_TIFF_STRUCTURAL_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        273,
        277,
        278,
        279,
        282,
        283,
        284,
        296,
        317,
        338,
        339,
        34675,
        513,
        514,
    }
)
"""Tags our TIFF writer owns; same-numbered tags in the source EXIF must not override them."""


def _encode_tiff(samples: np.ndarray, meta: _Meta) -> bytes:
    """A deflated TIFF of 8/16-bit integer or 32-bit float gray, gray+alpha, RGB or RGBA.

    Assembled with Pillow's IFD serialiser: header, directory, then the strips. If the source
    EXIF cannot be serialised into the directory it is left out rather than failing the save.
    """
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    arr = samples if samples.ndim == 3 else samples[..., None]
    rows = max(1, (256 * 1024) // (arr.shape[1] * arr.shape[2] * arr.itemsize))
    strips = _tiff_strips(arr, rows)
    for with_exif in (True, False):
        ifd = ImageFileDirectory_v2(prefix=b"II")
        if with_exif and meta.exif:
            _tiff_exif_tags(ifd, meta.exif)
        _tiff_layout_tags(ifd, arr, rows, strips, meta)
        try:
            body = ifd.tobytes(8)
        except Exception:
            if with_exif and meta.exif:
                continue
            raise
        return b"II*\x00" + struct.pack("<I", 8) + body + b"".join(strips)
    raise AssertionError("unreachable")


def _tiff_strips(arr: np.ndarray, rows: int) -> list[bytes]:
    """Deflated little-endian strips of ``rows`` rows, integers horizontally differenced first."""
    if arr.dtype.kind == "u":
        diff = arr.copy()
        diff[:, 1:] -= arr[:, :-1]  # TIFF Predictor 2; unsigned wrap-around is what the spec wants
        arr = diff
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return [zlib.compress(little[y : y + rows].tobytes(), 6) for y in range(0, arr.shape[0], rows)]


def _tiff_layout_tags(ifd: object, arr: np.ndarray, rows: int, strips: list[bytes], meta: _Meta) -> None:
    """The directory entries that describe our strips, overriding any same-numbered EXIF tag."""
    h, w, c = arr.shape
    offsets = [0]
    for s in strips[:-1]:
        offsets.append(offsets[-1] + len(s))
    tags: dict[int, object] = {
        256: w,
        257: h,
        258: (arr.itemsize * 8,) * c,
        259: 8,  # Adobe deflate
        262: 1 if c <= 2 else 2,  # BlackIsZero or RGB
        273: tuple(offsets),  # made absolute by tobytes(): strips follow the directory
        277: c,
        278: rows,
        279: tuple(len(s) for s in strips),
        284: 1,
    }
    if arr.dtype.kind == "u":
        tags[317] = 2  # horizontal differencing predictor
    else:
        tags[339] = (3,) * c  # IEEE float samples
    if c in (2, 4):
        tags[338] = (2,)  # unassociated alpha, i.e. not premultiplied
    if meta.dpi:
        tags.update({282: meta.dpi[0], 283: meta.dpi[1], 296: 2})
    if meta.icc:
        tags[34675] = meta.icc
    for tag, value in tags.items():
        ifd[tag] = value  # type: ignore[index]


def _tiff_exif_tags(ifd: object, exif_bytes: bytes) -> None:
    """Copy EXIF (IFD0 tags and the Exif/GPS sub-directories) into a TIFF directory."""
    from PIL import TiffTags

    exif = Image.Exif()
    exif.load(exif_bytes)
    for tag in list(exif):
        if tag in _TIFF_STRUCTURAL_TAGS:
            continue
        if tag in TiffTags.TAGS_V2_GROUPS:
            ifd[tag] = exif.get_ifd(tag)  # type: ignore[index]
        else:
            ifd[tag] = exif[tag]  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


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


def _one_line(exc: BaseException) -> str:
    """Exception text collapsed to one line: messages are printed as one line by the CLI."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
