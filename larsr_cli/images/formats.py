"""The one table of image formats: what larsr reads and writes, and what each file can hold.

Every place that needs to know something about a format (which decoders Pillow may run, the
CLI's ``--format`` choices, the suffixes the job planner recognises, whether alpha, 16 bits, dpi,
ICC or EXIF survive, the default quality, the wording of errors) asks this table, so adding a
format is adding one :class:`ImageFormat` record to :data:`FORMATS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from larsr_cli.errors import ImageError

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "READABLE_FORMATS",
    "ImageFormat",
    "find_format",
    "format_choices",
    "lossy_formats",
    "output_format",
    "output_suffix",
    "resolve_format",
    "suffix_list",
    "writable_formats",
]


@dataclass(frozen=True)
class ImageFormat:
    """Everything larsr knows about one file format, in one place.

    The booleans say what an output of this format can store; :mod:`.encode` drops or converts
    whatever it cannot (alpha, gray, 16 bits, metadata), so a record is all a new format needs
    as long as Pillow can write it.
    """

    name: str  # the --format spelling, "jpg"
    pillow: str  # Pillow's format name, "JPEG": what Image.open reports and Image.save takes
    suffixes: tuple[str, ...]  # what written files may be called; the first is given to new files
    aliases: tuple[str, ...] = ()  # more --format spellings
    input_suffixes: tuple[str, ...] = ()  # recognised on input only (".jfif"): never written
    writable: bool = True  # False: decoded, never written (GIF)
    alpha: bool = False  # keeps transparency; else alpha is flattened onto white, with a warning
    grayscale: bool = True  # has gray modes; else a gray source is written as RGB (WebP)
    deep: bool = False  # keeps 16 bits per sample from a 16-bit source
    float_samples: bool = False  # keeps 32-bit float samples from a float source
    dpi: bool = False  # stores resolution
    icc: bool = False  # stores an ICC profile
    exif: bool = False  # stores EXIF
    quality: int | None = None  # default quality of a lossy format; None: lossless, no setting
    full_chroma_from: int | None = None  # quality from which chroma is not subsampled (JPEG 4:4:4)
    # zlib level of a lossless deflate format (PNG): only time and size, never pixels. Pillow's
    # default 6 spent 7.6 s on a 4096 px output, a quarter of the upscale; 3 took 2.2 s for a file
    # 9% larger (15.6 -> 17.0 MiB; level 1: 1.7 s, 18.1 MiB).
    compress_level: int | None = None
    writer: Literal["pillow", "tifffile"] = "pillow"  # which library encodes it (see .encode)
    # Largest dpi the format's resolution field holds (JPEG: 16-bit dpi; PNG: uint32 px/m; BMP:
    # int32 px/m): an x4 upscale of a high-dpi scan must be clamped, not wrapped or refused.
    max_dpi: float | None = None
    max_exif: int | None = None  # bytes of EXIF the format can carry (JPEG: one 64 kB APP1 segment)

    @property
    def suffix(self) -> str:
        """The suffix new files of this format are given."""
        return self.suffixes[0]

    @property
    def keys(self) -> tuple[str, ...]:
        """Every lower-case spelling that names this format: name, aliases, suffixes without dot."""
        stems = tuple(s.lstrip(".") for s in self.suffixes)
        return tuple(dict.fromkeys((self.name, *self.aliases, *stems)))


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat(
        "png",
        "PNG",
        (".png",),
        alpha=True,
        deep=True,
        dpi=True,
        icc=True,
        exif=True,
        max_dpi=(2**32 - 1) * 0.0254,
        compress_level=3,
    ),
    ImageFormat(
        "jpg",
        "JPEG",
        (".jpg", ".jpeg", ".jpe"),
        aliases=("jpeg",),
        input_suffixes=(".jfif",),
        dpi=True,
        icc=True,
        exif=True,
        quality=95,
        full_chroma_from=90,  # 4:4:4 at high quality: do not halve the chroma we just upscaled
        max_dpi=65535,
        max_exif=65533,
    ),
    ImageFormat("webp", "WEBP", (".webp",), alpha=True, grayscale=False, icc=True, exif=True, quality=95),
    ImageFormat(
        "tiff",
        "TIFF",
        (".tif", ".tiff"),
        alpha=True,
        deep=True,
        float_samples=True,
        dpi=True,
        icc=True,
        exif=True,
        writer="tifffile",
    ),
    ImageFormat("bmp", "BMP", (".bmp",), dpi=True, max_dpi=(2**31 - 1) * 0.0254),
    ImageFormat("gif", "GIF", (".gif",), writable=False),
)
"""All formats, in the order the CLI and the error messages list them."""

READABLE_FORMATS: tuple[str, ...] = tuple(f.pillow for f in FORMATS)
"""The decoders larsr lets Pillow run, whatever a file's name says: raster photo formats only.

Without it an EPS named photo.png makes Pillow call Ghostscript, and rarely used decoders widen
what a hostile file can reach.
"""

IMAGE_SUFFIXES: frozenset[str] = frozenset(s for f in FORMATS for s in (*f.suffixes, *f.input_suffixes))
"""File suffixes taken as images when a folder is scanned or ``-o`` names a file."""


def writable_formats() -> tuple[ImageFormat, ...]:
    """The formats larsr can write, in table order."""
    return tuple(f for f in FORMATS if f.writable)


def lossy_formats() -> tuple[ImageFormat, ...]:
    """The writable formats that take a quality setting."""
    return tuple(f for f in writable_formats() if f.quality is not None)


def format_choices() -> list[str]:
    """The CLI's ``--format`` values: ``same`` (the input's) and each writable name and alias."""
    return ["same", *(key for f in writable_formats() for key in (f.name, *f.aliases))]


def find_format(key: str, *, writable: bool = True) -> ImageFormat | None:
    """The format a name, alias, Pillow name or suffix (``"JPG"``, ``".tif"``) means, or None."""
    wanted = key.lower().lstrip(".")
    for fmt in FORMATS:
        if (fmt.writable or not writable) and (wanted in fmt.keys or wanted == fmt.pillow.lower()):
            return fmt
    return None


def suffix_list(*, dotted: bool) -> str:
    """ "png, jpg, webp, tiff or bmp" (names) or ".png, .jpg, ..." (suffixes), for error texts."""
    words = [f.suffix if dotted else f.name for f in writable_formats()]
    return ", ".join(words[:-1]) + " or " + words[-1]


def output_format(format: str | None = None, path: str | os.PathLike[str] | None = None) -> ImageFormat:
    """The output format from an explicit ``--format`` or else the output file's suffix."""
    key = format if format else (Path(path).suffix if path is not None else "")
    fmt = find_format(key) if key else None
    if fmt is None:
        what = f"format '{format}'" if format else f"output suffix '{key}' of {path}"
        raise ImageError(f"unsupported {what}; use {suffix_list(dotted=False)}")
    return fmt


def resolve_format(format: str | None = None, path: str | os.PathLike[str] | None = None) -> str:
    """Pillow's name (``"JPEG"``) of :func:`output_format`, for code that compares formats."""
    return output_format(format, path).pillow


def output_suffix(source_suffix: str) -> str:
    """The suffix a ``--format same`` output keeps: the source's if writable, else ``.png``."""
    suffix = source_suffix.lower()
    fmt = find_format(suffix) if suffix else None
    return suffix if fmt is not None and suffix in fmt.suffixes else ".png"
