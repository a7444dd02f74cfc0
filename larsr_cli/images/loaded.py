"""The record a decoded image travels in, from :mod:`.decode` to the model and on to :mod:`.encode`.

The model only ever sees an upright HxWx3 float32 array in [0, 1]. Everything that makes real
photos awkward (alpha, grayscale, palettes, CMYK, 16-bit and float samples, EXIF orientation,
ICC profiles) is peeled off on the way in and remembered here, so that the output can be written
as the same *kind* of file as the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LoadedImage"]


@dataclass
class LoadedImage:
    """An upright image as float arrays plus everything needed to write the same kind of file.

    ``mode`` is the source's PIL mode; for 16-bit colour files that Pillow can only open as
    8-bit, it is ``"RGB;16"``, ``"RGBA;16"`` or ``"LA;16"`` instead. ``bit_depth`` is 16 for any
    source with more than 8 bits per sample (16-bit integer, 32-bit integer ``I``, float ``F``).
    ``format`` is Pillow's name of the source format (``"PNG"``).
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
    # What the decoder complained about but survived ("Corrupt EXIF data"): one line each, shown
    # as larsr warnings instead of Python's two-line warnings with a library's source path.
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), PIL's order, of the upright image."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])
