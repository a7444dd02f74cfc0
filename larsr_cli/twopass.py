"""Two-pass tiling: the structure image once per pixel, the texture stages tile by tile.

One-pass tiles (``tiling.plan_tiles``) recompute the whole chain over a margin that is the sum
of every stage's receptive field: 88 LR px a side for larsr-x4, so a 1024 px input under the
memory budget spent 3.4x the untiled time. But the first stage, the coarse net, is a plain
convolutional map from LR to an HR *image*: computed once, in strips with its own margin only
(34 px), it can be kept for the rows that the next tiles need, and the texture stages then need
only their own margin (condition + LAR + decoder). Both passes are exact (each margin covers its
stage's receptive field), so the result is bit-identical to the untiled one, as before.

The structure rows live in a window that slides down the image with the bands of texture tiles:
rows shared by two bands are computed once and kept, so no structure pixel is computed twice
except in the column margins of its own strip tiles. Memory: the window (band height x image
width of HR float32) plus one tile's working memory, never the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .heap import release_freed_memory
from .tiling import Box, Tile, hr_slices, lr_window, plan_strips

# (1, 3, h, w) LR -> (1, 3, s*h, s*w) structure image of that window.
StructureFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Band:
    """Texture tiles that read the same LR rows (one row of the tile grid)."""

    y0: int  # LR rows of the tiles' contexts
    y1: int
    tiles: tuple[Tile, ...]
    indices: tuple[int, ...]  # each tile's place in the plan (progress reports count by it)


def bands_of(tiles: list[Tile]) -> list[Band]:
    """Group tiles by their context rows, top to bottom (``plan_tiles`` makes them row-major)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, tile in enumerate(tiles):
        groups.setdefault((tile.context.y0, tile.context.y1), []).append(index)
    return [
        Band(y0, y1, tuple(tiles[i] for i in group), tuple(group))
        for (y0, y1), group in sorted(groups.items())
    ]


class StructureRows:
    """The structure image of a window of LR rows over the full width, sliding downwards.

    ``window(y0, y1)`` must be asked for with non-decreasing ``y0``; rows already held are kept,
    the rest are computed by strip tiles of at most ``strip_px`` LR pixels each (context included)
    that read ``margin`` LR px of context on every side.
    """

    def __init__(
        self, structure: StructureFn, lr: np.ndarray, scale: int, margin: int, multiple: int, strip_px: int
    ) -> None:
        self.structure, self.lr, self.scale = structure, lr, scale  # lr is HxWx3 float32, padded
        self.margin, self.multiple, self.strip_px = margin, multiple, max(1, strip_px)
        self.height, self.width = lr.shape[:2]
        self.y0 = self.y1 = 0
        self.rows = np.zeros((3, 0, self.width * scale), dtype=np.float32)
        self.strips = 0  # structure runs so far, and the LR pixels they kept: for tests and benchmarks
        self.own_pixels = 0

    def _compute(self, y0: int, y1: int, out: np.ndarray) -> None:
        """Structure rows ``y0:y1`` (LR) over the full width into ``out`` (3, s*(y1-y0), s*W),
        exact: each strip tile keeps only its own pixels and reads ``margin`` of context. The
        strips are the balanced grid that computes the fewest pixels within the strip budget
        (``tiling.plan_strips``)."""
        s = self.scale
        strips = plan_strips(y0, y1, self.height, self.width, self.margin, self.multiple, self.strip_px)
        for strip in strips:
            own, context = strip.own, strip.context
            xc = self.structure(lr_window(self.lr, context))[0]
            self.strips += 1
            self.own_pixels += own.height * own.width
            out_rows, out_cols = hr_slices(own, Box(y0, y1, 0, self.width), s)
            rows, cols = hr_slices(own, context, s)
            out[:, out_rows, out_cols] = xc[:, rows, cols]
            del xc
            release_freed_memory("strip")  # a strip's feature maps, before the next strip

    def window(self, y0: int, y1: int) -> np.ndarray:
        """(3, s*(y1-y0), s*W): the structure image of LR rows ``y0:y1``.

        The new window is allocated once and the kept rows copied in before the old window goes,
        so at most two windows exist for a moment and only one while strips are computed.
        """
        if y0 < self.y0:
            raise ValueError("structure rows are asked for top to bottom")
        s = self.scale
        window = np.empty((3, (y1 - y0) * s, self.width * s), dtype=np.float32)
        keep0, keep1 = max(y0, self.y0), min(y1, self.y1)
        if keep1 > keep0:
            window[:, (keep0 - y0) * s : (keep1 - y0) * s] = self.rows[
                :, (keep0 - self.y0) * s : (keep1 - self.y0) * s
            ]
        else:
            keep1 = y0
        self.rows = window  # the old window is released here, before any strip runs
        if keep1 < y1:
            self._compute(keep1, y1, window[:, (keep1 - y0) * s :])
        self.y0, self.y1 = y0, y1
        return window


def context_structure(window: np.ndarray, band: Band, context: Box, scale: int) -> np.ndarray:
    """(1, 3, s*h, s*w): the window's structure pixels of one tile's context."""
    rows, cols = hr_slices(context, Box(band.y0, band.y1, 0, window.shape[2] // scale), scale)
    return np.ascontiguousarray(window[None, :, rows, cols])


def window_bytes(rows: int, width: int, scale: int) -> int:
    """Bytes of a structure window of ``rows`` LR rows (float32 RGB at xscale); twice that for the
    moment a slide copies the kept rows into the next window."""
    return 2 * rows * width * scale * scale * 3 * 4


def render_two_pass(
    structure: StructureFn,
    render_on_structure: Callable[[np.ndarray, Tile, int], np.ndarray],
    lr: np.ndarray,
    tiles: list[Tile],
    *,
    scale: int,
    structure_margin: int,
    multiple: int,
    strip_px: int,
) -> Iterator[tuple[Tile, np.ndarray]]:
    """(tile, its HR result over its context) for every tile, band by band.

    ``lr`` is the padded HxWx3 image; ``render_on_structure(xc, tile, index)`` runs the texture
    stages on the tile's exact structure image.
    """
    rows = StructureRows(structure, lr, scale, structure_margin, multiple, strip_px)
    for band in bands_of(tiles):
        window = rows.window(band.y0, band.y1)
        for index, tile in zip(band.indices, band.tiles, strict=True):
            xc = context_structure(window, band, tile.context, scale)
            yield tile, render_on_structure(xc, tile, index)
