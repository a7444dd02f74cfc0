"""Image files in and out: formats, decoding, encoding, metadata and the pixel maths around them."""

from ..imageio import pil_arrays, quantise, resize_float

__all__ = ["pil_arrays", "quantise", "resize_float"]
