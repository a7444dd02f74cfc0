"""Image files in and out: formats, decoding, encoding, metadata and the pixel maths around them.

One module per job: :mod:`.formats` (the one table of formats), :mod:`.decode` (files to
:class:`LoadedImage`), :mod:`.deep` (16-bit colour Pillow cannot decode), :mod:`.encode`
(pixels to files), :mod:`.tiff` and :mod:`.png16` (the writers Pillow lacks), :mod:`.metadata`
(ICC, EXIF, dpi) and :mod:`.pixels` (rounding, resampling, orientation).
"""

from .decode import load_image, pil_arrays
from .encode import AlphaFlattenedWarning, encode_image, save_bytes, save_image
from .formats import FORMATS, IMAGE_SUFFIXES, ImageFormat, find_format, format_choices, resolve_format
from .loaded import LoadedImage
from .metadata import MetadataDroppedWarning
from .pixels import bleed_under_alpha, quantise, resize_float

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "AlphaFlattenedWarning",
    "ImageFormat",
    "LoadedImage",
    "MetadataDroppedWarning",
    "bleed_under_alpha",
    "encode_image",
    "find_format",
    "format_choices",
    "load_image",
    "pil_arrays",
    "quantise",
    "resize_float",
    "resolve_format",
    "save_bytes",
    "save_image",
]
