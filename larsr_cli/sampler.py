"""Drawing texture codes from the LAR logits, with noise that does not depend on tiling.

A ``Sampler`` is resolved once per image from (temperature, seed) by ``resolve_sampler``, the one
place that decides that a temperature above zero means noise; the pipeline asks it for a
``TileDraw`` per tile and calls that once per autoregressive step. New sampling rules (top-k, a
different noise field) are a new ``Sampler`` subclass passed to ``Upscaler.upscale_array``;
nothing else changes.

The uniform number used for the code at global index-map position (y, x) is a pure function of
(seed, y, x): a Philox counter-based generator keyed by the seed, with the row in the counter.
A tile asks for its own window of that global field, so the same seed draws the same codes
whatever the tile size, the order of tiles or the device. Sampling is inverse-CDF on
``softmax(logits / T)``; ``T = 0`` is argmax (no randomness at all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .parallel import for_row_blocks
from .tiling import Box


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


# Rows per job when a draw is split across threads: 4 MB of float32 logits at 256 codes, small
# enough to stay in cache through the passes, large enough that a job outweighs its hand-off.
ROWS_PER_JOB = 4096
# Codes per block of the two-level inverse CDF below.
CODE_BLOCK = 16


def _running_sum(columns: np.ndarray) -> np.ndarray:
    """Running sum down axis 0 of ``(n, rows)``, in place: the same sequential float32 adds as
    ``np.cumsum`` along each row of the transpose, but each add is one contiguous vector over all
    rows, where cumsum along a row of 16 ran a short loop per row (a tenth of the draw each time)."""
    for j in range(1, columns.shape[0]):
        np.add(columns[j - 1], columns[j], out=columns[j])
    return columns


def _draw_rows(logits: np.ndarray, temperature: float, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws, in two levels: which block of ``CODE_BLOCK`` codes, then which code.

    A running sum along each row of 256 codes is a sequential loop in numpy (half the draw's
    time); block totals need a running sum over 16 entries, and only the chosen block's 16
    probabilities are summed again. Same uniforms, same rule (the first code whose cumulative
    weight exceeds ``u * total``), so the same codes up to float rounding at a boundary. The
    block-level arrays are kept transposed (block, row): their running sums and counts are then
    vector operations across rows, with the very adds of a per-row cumsum, so the same bits.
    """
    rows, k = logits.shape
    block = CODE_BLOCK if k % CODE_BLOCK == 0 else k
    blocks = k // block
    z = logits * np.float32(1.0 / temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    cells = z.reshape(rows, blocks, block)
    # Block totals per row. einsum, not sum(axis=2): numpy's reduction over a short trailing axis
    # ran at a quarter of the speed (7.9 vs 1.8 ms for 32768 rows), and einsum still adds each
    # row's 16 weights on their own, whatever the tile.
    ends = _running_sum(np.ascontiguousarray(np.einsum("rbk->rb", cells).T))  # (blocks, rows)
    threshold = uniforms.astype(np.float32) * ends[-1]
    chosen = np.minimum(np.count_nonzero(ends <= threshold, axis=0), blocks - 1)
    row = np.arange(rows)
    before = np.where(chosen > 0, ends[chosen - 1, row], np.float32(0.0))
    inside = _running_sum(np.ascontiguousarray(cells[row, chosen].T))  # (block, rows)
    inside += before
    codes = chosen * block + np.count_nonzero(inside <= threshold, axis=0)
    # Guard the float edge u*total == total: it must still pick a real code.
    return np.minimum(codes, k - 1)


def sample_codes(
    logits: np.ndarray, temperature: float, uniforms: np.ndarray | None, workers: int = 1
) -> np.ndarray:
    """One code per row of ``logits`` (P, K). ``uniforms`` (P,) is required when T > 0.

    Rows are independent, so ``workers`` threads draw blocks of rows at once (numpy releases the
    GIL in its ufuncs): the same codes bit for bit, in about two thirds of the time on two cores
    (numpy alone is single-threaded while onnxruntime uses every core).
    """
    if temperature <= 0:
        return logits.argmax(axis=1)
    if uniforms is None:
        raise ValueError("sampling at T > 0 needs uniforms")
    codes = np.empty(logits.shape[0], dtype=np.int64)

    def job(block: slice) -> None:
        codes[block] = _draw_rows(logits[block], temperature, uniforms[block])

    for_row_blocks(job, logits.shape[0], ROWS_PER_JOB, workers)
    return codes


# A tile's drawing rule: (logits (P, c, K) of all patches at one LAR step, the index-map
# positions (0 .. patch_size**2 - 1) of the step's c codes) -> codes (P, c). One call per step,
# not per code: the step graph writes its c rows of a patch side by side, so a draw per code would
# read every other row, and numpy on such a strided view ran the first pass 5x slower.
TileDraw = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class Step:
    """What a step hook (``on_step``) hears after every autoregressive step of every tile."""

    tile: int  # 0-based tile index
    tiles: int
    step: int  # 1-based step inside the tile
    steps: int

    @property
    def done(self) -> int:
        """Steps finished over the whole image, for one progress bar across all tiles."""
        return self.tile * self.steps + self.step

    @property
    def total(self) -> int:
        return self.tiles * self.steps


StepHook = Callable[[Step], None]


class Sampler(ABC):
    """Chooses codes from logits; resolved once per image, asked for one ``TileDraw`` per tile."""

    #: Whether two seeds can give different pictures (``--samples`` is pointless otherwise).
    stochastic: bool = False

    @abstractmethod
    def tile(self, index_box: Box, patch_size: int) -> TileDraw:
        """The drawing rule for the tile whose index-map window is ``index_box``."""


class ArgmaxSampler(Sampler):
    """Temperature 0: the most likely code everywhere; the seed has no effect."""

    def tile(self, index_box: Box, patch_size: int) -> TileDraw:
        return lambda logits, positions: logits.argmax(axis=-1)


class TemperatureSampler(Sampler):
    """Inverse-CDF draws from ``softmax(logits / T)`` with the seed's position-keyed noise."""

    stochastic = True

    def __init__(self, temperature: float, seed: int, workers: int = 1) -> None:
        if not temperature > 0:
            raise ValueError("TemperatureSampler needs a temperature above 0; use ArgmaxSampler")
        self.temperature = float(temperature)
        self.noise = CodeNoise(seed)
        self.workers = max(1, int(workers))

    def tile(self, index_box: Box, patch_size: int) -> TileDraw:
        b = index_box
        uniforms = self.noise.window(b.y0, b.y1, b.x0, b.x1)
        k = patch_size

        def draw(logits: np.ndarray, positions: tuple[int, ...]) -> np.ndarray:
            patches, per_step, codes = logits.shape
            # The uniforms of every (patch, code) pair in the logits' own row order.
            noise = np.empty((patches, per_step), dtype=np.float64)
            for slot, position in enumerate(positions):
                dy, dx = divmod(position, k)
                noise[:, slot] = uniforms[dy::k, dx::k].reshape(-1)
            rows = logits.reshape(patches * per_step, codes)
            drawn = sample_codes(rows, self.temperature, noise.reshape(-1), self.workers)
            return drawn.reshape(patches, per_step)

        return draw


def resolve_sampler(temperature: float, seed: int, workers: int = 1) -> Sampler:
    """The one place that turns the user's (temperature, seed) into a sampler; ``workers`` is the
    number of threads a draw may use (the Upscaler passes its onnxruntime thread count)."""
    if temperature > 0:
        return TemperatureSampler(temperature, seed, workers)
    return ArgmaxSampler()
