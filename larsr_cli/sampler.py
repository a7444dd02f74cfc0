"""Drawing texture codes from the LAR logits, with noise that does not depend on tiling.

The uniform number used for the code at global index-map position (y, x) is a pure function of
(seed, y, x): a Philox counter-based generator keyed by the seed, with the row in the counter.
A tile asks for its own window of that global field, so the same seed draws the same codes
whatever the tile size, the order of tiles or the device. Sampling is inverse-CDF on
``softmax(logits / T)``; ``T = 0`` is argmax (no randomness at all).
"""

from __future__ import annotations

import numpy as np


class CodeNoise:
    """Uniform [0, 1) noise over the global index map for one seed."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.seed = int(seed)

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Noise for rows ``y0:y1`` and columns ``x0:x1`` of the global index map (float64)."""
        out = np.empty((y1 - y0, x1 - x0), dtype=np.float64)
        for row in range(y0, y1):
            # One Philox stream per row: the row sits in the second counter word, so streams of
            # different rows never overlap however wide the image is.
            bitgen = np.random.Philox(counter=[0, row, 0, 0], key=[self.seed, 0x4C415253])
            out[row - y0] = np.random.Generator(bitgen).random(x1)[x0:]
        return out


def sample_codes(logits: np.ndarray, temperature: float, uniforms: np.ndarray | None) -> np.ndarray:
    """One code per row of ``logits`` (P, K). ``uniforms`` (P,) is required when T > 0."""
    if temperature <= 0:
        return logits.argmax(axis=1)
    if uniforms is None:
        raise ValueError("sampling at T > 0 needs uniforms")
    z = logits * np.float32(1.0 / temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    np.cumsum(z, axis=1, out=z)
    threshold = uniforms.astype(np.float32).reshape(-1, 1) * z[:, -1:]
    codes = (z <= threshold).sum(axis=1)
    # Guard the float edge u*total == total: it must still pick a real code.
    return np.minimum(codes, logits.shape[1] - 1)
