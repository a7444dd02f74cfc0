"""PSNR-Y and SSIM-Y as the super-resolution literature reports them.

Numbers are only comparable with published ones when computed the same way: luma from MATLAB's
`rgb2ycbcr` (BT.601, studio range 16..235), a border of `scale` pixels cut away, and SSIM with an
11x11 Gaussian window (sigma 1.5) on the 0..255 scale, keeping only windows that fit entirely
inside the image ("valid" filtering).
"""

from __future__ import annotations

import numpy as np

from export.degrade import psnr

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of a [0,1] RGB image, returned in [16, 235] / 255 like MATLAB's rgb2ycbcr."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {arr.shape}")
    return (16.0 + arr @ _Y_WEIGHTS) / 255.0


def _crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Cut the border where SR methods have no context; it would dominate small-image scores."""
    if border <= 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise ValueError(f"image {img.shape[:2]} too small for a border of {border}")
    return img[border:-border, border:-border]


def _y_pair(a: np.ndarray, b: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images as border-cropped luma, after checking they can be compared at all."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shape mismatch: {np.shape(a)} vs {np.shape(b)}")
    return _crop_border(rgb_to_y(a), border), _crop_border(rgb_to_y(b), border)


def psnr_y(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    """PSNR on luma in dB for [0,1] RGB images (peak 1.0, equivalent to 255 on the 8-bit scale)."""
    ya, yb = _y_pair(a, b, border)
    return psnr(ya, yb, peak=1.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The 1-D normalised Gaussian; SSIM's 2-D window is its outer product, so filter separably."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation: output only where the whole window lies inside the image."""
    n = len(w)
    h, width = img.shape
    rows = sum(w[i] * img[i : h - n + 1 + i, :] for i in range(n))
    return sum(w[j] * rows[:, j : width - n + 1 + j] for j in range(n))


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Wang et al.'s SSIM index map for two 0..255 images."""
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    w = _gaussian_window()
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    var_x = _filter_valid(x * x, w) - mu_x * mu_x
    var_y = _filter_valid(y * y, w) - mu_y * mu_y
    cov = _filter_valid(x * y, w) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim_y(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    """Mean SSIM on luma for [0,1] RGB images, on the 0..255 scale used by published SR tables."""
    ya, yb = _y_pair(a, b, border)
    if min(ya.shape) < 11:
        raise ValueError(f"image {ya.shape} smaller than the 11x11 SSIM window after the border cut")
    return float(np.mean(_ssim_map(ya * 255.0, yb * 255.0)))


def stripe_score(img: np.ndarray, periods: tuple[int, ...] = (4, 8)) -> float:
    """How strongly the luma repeats with a period of 4 or 8 px, relative to nearby frequencies.

    The first texture model printed a stripe every 4 output pixels (one per LR pixel, two index
    cells); such a grid shows up as a spectral line at exactly that period. For each period and
    axis, the power on that line of the 2D spectrum (Hann-windowed, mean removed) is divided by
    the mean power on the lines 2-4 bins either side; the score is the mean of those ratios. A
    natural photo scores about 1; a striped output much more. Compare an output's score to the HR
    photo's own: the difference is the stripes that the method added.
    """
    y = rgb_to_y(img).astype(np.float64)
    h, w = y.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
    ratios = []
    for axis, n in ((1, w), (0, h)):
        line_power = power.mean(axis=1 - axis)  # power per frequency along this axis
        for p in periods:
            k = round(n / p)
            if k < 5 or k + 4 >= n // 2 + 1:
                continue
            around = [line_power[k + d] for d in (-4, -3, -2, 2, 3, 4)]
            ratios.append(line_power[k] / max(float(np.mean(around)), 1e-12))
    return float(np.max(ratios)) if ratios else float("nan")
