"""Helpers shared by the runtime tests (no torch: the runtime tests must run without [export])."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB of two arrays on the same scale (peak 1.0 for floats, 255.0 for 8-bit)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
