"""The one degradation model (HR -> LR) shared by training, evaluation and benchmarks.

Every place that makes an LR image from an HR photo goes through `bicubic_downscale`, so that
training pairs, held-out scores and the LR-consistency check all agree on what "x4 bicubic" means:
PIL's antialiased bicubic (Keys kernel, a = -0.5, support widened by the factor), computed in
float32 with no clipping and no rounding. Rounding to 8 bit is a separate, explicit step
(`to_uint8` / `quantize_8bit`) because real LR inputs are 8-bit files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch stays optional for the numpy path
    import torch


def _check_divisible(height: int, width: int, factor: int) -> None:
    """Refuse sizes that do not divide: a silent crop would shift the LR/HR pixel grid."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if height % factor or width % factor:
        raise ValueError(f"image size {height}x{width} is not a multiple of the factor {factor}")


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one float plane with PIL; mode "F" keeps full float precision and no clamping."""
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, resample=Image.Resampling.BICUBIC), dtype=np.float32)


def bicubic_downscale(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Downscale an HxW(x3) float image by `factor` with antialiased bicubic, float32 out.

    No clipping and no quantisation, so the operator stays linear (the LR-consistency check and
    the training loss rely on that).
    """
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    height, width = arr.shape[:2]
    _check_divisible(height, width, factor)
    size = (width // factor, height // factor)
    if arr.ndim == 2:
        return _resize_plane(arr, size)
    planes = [_resize_plane(arr[:, :, c], size) for c in range(arr.shape[2])]
    return np.stack(planes, axis=2)


def bicubic_upscale(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """The bicubic baseline: the same PIL kernel as the degradation, in float, clipped to [0, 1]
    like any displayable output. Training logs and benchmarks both measure against it."""
    arr = np.asarray(img, dtype=np.float32)
    height, width = arr.shape[:2]
    size = (width * factor, height * factor)
    planes = [_resize_plane(arr[:, :, c], size) for c in range(arr.shape[2])]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round a [0,1] float image to 8 bit, the way any image file would store it."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """Round to the 8-bit grid but stay float in [0,1], so training sees what an 8-bit LR file holds."""
    return to_uint8(img).astype(np.float32) / 255.0


def bicubic_downscale_torch(x: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Differentiable twin of `bicubic_downscale` for NCHW tensors (LR-consistency loss).

    torch's antialiased bicubic reuses PIL's kernel (a = -0.5, renormalised at the borders), so the
    two agree to float rounding; tests/test_degrade.py holds that claim to account.
    """
    import torch.nn.functional as F

    if x.dim() != 4:
        raise ValueError(f"expected an NCHW tensor, got shape {tuple(x.shape)}")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    _check_divisible(height, width, factor)
    size = (height // factor, width // factor)
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Plain PSNR in dB; identical inputs give +inf rather than a division warning."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


def lr_consistency_db(sr: np.ndarray, lr: np.ndarray, factor: int = 4) -> float:
    """How well an SR output explains its input: PSNR between downscale(sr) and lr, in dB."""
    down = bicubic_downscale(sr, factor)
    lr_arr = np.asarray(lr, dtype=np.float32)
    if down.shape != lr_arr.shape:
        raise ValueError(f"downscaled SR {down.shape} does not match LR {lr_arr.shape}")
    return psnr(down, lr_arr, peak=1.0)
