"""Bicubic resampling as fixed convolutions: exact, exportable and fast in onnxruntime.

onnxruntime's ``Resize`` (cubic) ran at a fifth of the coarse net's time on a 256 px input (106 of
516 ms), more than any convolution, and its antialiased downscale is not an ONNX op at all. A
bicubic x``s`` upsample is ``s*s`` phase filters of 5x5 taps on the LR grid followed by
``pixel_shuffle``; edge handling is a ``Pad`` (replicate for PyTorch's clamped indices, zero where
a residual must stay local). The same taps with Keys' ``a = -0.5`` are PIL's kernel, which the
degradation uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Keys' cubic parameter: PyTorch's ``interpolate(mode="bicubic")`` and PIL's ``BICUBIC``.
TORCH_CUBIC_A = -0.75
PIL_CUBIC_A = -0.5


def keys_kernel(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    return np.where(
        x < 1,
        (a + 2) * x**3 - (a + 3) * x**2 + 1,
        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
    )


def up_taps(scale: int, a: float = PIL_CUBIC_A) -> np.ndarray:
    """(scale, 5) weights of bicubic x``scale`` upsampling: phase p of output pixel ``scale*i + p``
    reads LR pixels ``i-2 .. i+2`` (half-pixel centres, as ``align_corners=False``)."""
    taps = np.zeros((scale, 5))
    for p in range(scale):
        centre = (p + 0.5) / scale - 0.5  # in LR pixels, relative to i
        w = keys_kernel(np.arange(-2, 3) - centre, a)
        taps[p] = w / w.sum()
    return taps


class BicubicUpsample(nn.Module):
    """x``scale`` bicubic upsampling per channel; ``edge="replicate"`` equals
    ``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)`` (to float
    rounding), ``edge="zeros"`` treats the outside as 0 (for residuals)."""

    def __init__(
        self, scale: int, channels: int = 3, a: float = TORCH_CUBIC_A, edge: str = "replicate"
    ) -> None:
        super().__init__()
        if edge not in ("replicate", "zeros"):
            raise ValueError("edge must be 'replicate' or 'zeros'")
        self.scale, self.channels, self.edge = scale, channels, edge
        u = up_taps(scale, a)
        # Output channel c*s*s + py*s + px: phase (py, px) of channel c, as pixel_shuffle expects.
        phases = np.einsum("pi,qj->pqij", u, u).reshape(scale * scale, 1, 5, 5)
        weight = torch.tensor(np.tile(phases, (channels, 1, 1, 1)), dtype=torch.float32)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.edge == "replicate":
            x = F.pad(x, (2, 2, 2, 2), mode="replicate")
            padding = 0
        else:
            padding = 2
        phases = F.conv2d(x, self.weight.to(x.dtype), padding=padding, groups=self.channels)
        return F.pixel_shuffle(phases, self.scale)
