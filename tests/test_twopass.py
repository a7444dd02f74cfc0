"""Two-pass tiling: exact structure rows computed once, texture tiles that match the untiled result."""

from __future__ import annotations

import numpy as np
import pytest

from larsr_cli.pipeline import Upscaler
from larsr_cli.tiling import Box, Tile, balanced_range_spans, plan_strips, plan_tiles
from larsr_cli.twopass import StructureRows, bands_of

SCALE = 2
RADIUS = 3  # LR px the fake structure function reads around each pixel


def fake_structure(lr: np.ndarray) -> np.ndarray:
    """A local map with receptive field RADIUS and zero padding, like a conv net: (1,3,h,w) ->
    (1,3,2h,2w). Each output is a weighted sum that depends on position inside the window only
    through the zero border, so a window with enough margin reproduces the whole-image values."""
    x = lr[0]
    padded = np.pad(x, ((0, 0), (RADIUS, RADIUS), (RADIUS, RADIUS)))
    acc = np.zeros_like(x)
    h, w = x.shape[1:]
    for dy in range(-RADIUS, RADIUS + 1):
        for dx in range(-RADIUS, RADIUS + 1):
            weight = np.float32(1.0 / (1 + abs(dy) + 2 * abs(dx)))
            acc += weight * padded[:, RADIUS + dy : RADIUS + dy + h, RADIUS + dx : RADIUS + dx + w]
    return np.repeat(np.repeat(acc, SCALE, axis=1), SCALE, axis=2)[None]


def whole(lr: np.ndarray) -> np.ndarray:
    return fake_structure(np.ascontiguousarray(lr.transpose(2, 0, 1)[None]))[0]


def test_structure_rows_equal_the_whole_image_and_are_computed_once() -> None:
    lr = np.random.default_rng(0).random((40, 30, 3), dtype=np.float32)
    expected = whole(lr)
    calls: list[tuple[int, int]] = []

    def counted(patch: np.ndarray) -> np.ndarray:
        calls.append(patch.shape[2:])
        return fake_structure(patch)

    rows = StructureRows(counted, lr, SCALE, margin=RADIUS, multiple=2, strip_px=16 * 20)
    first = rows.window(0, 20).copy()
    assert np.array_equal(first, expected[:, : 20 * SCALE])
    second = rows.window(12, 34)  # rows 12..20 are kept, only 20..34 are new
    assert np.array_equal(second, expected[:, 12 * SCALE : 34 * SCALE])
    third = rows.window(30, 40)
    assert np.array_equal(third, expected[:, 30 * SCALE :])
    assert len(calls) == rows.strips > 3  # the strip budget really forced several strip tiles
    # Every LR pixel was computed exactly once: the rows shared by two windows were kept.
    assert rows.own_pixels == 40 * 30
    with pytest.raises(ValueError):
        rows.window(0, 10)  # windows only slide downwards


@pytest.mark.parametrize(
    "start,stop,length,count", [(0, 40, 40, 3), (12, 60, 80, 4), (20, 80, 80, 2), (30, 50, 80, 1)]
)
def test_range_spans_cover_the_range_with_equal_contexts(
    start: int, stop: int, length: int, count: int
) -> None:
    margin, multiple = 6, 2
    spans = balanced_range_spans(start, stop, length, count, margin, multiple)
    assert spans is not None and len(spans) == count
    assert spans[0][0] == start and spans[-1][1] == stop
    assert all(a % multiple == 0 and a < b for a, b in spans)
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False))
    contexts = [min(length, b + margin) - max(0, a - margin) for a, b in spans]
    assert max(contexts) - min(contexts) <= multiple  # equal up to rounding to the multiple


def test_structure_strips_partition_the_rows_within_the_budget() -> None:
    height, width, margin, budget = 96, 70, 8, 40 * 40
    strips = plan_strips(20, 60, height, width, margin, 2, budget)
    covered = np.zeros((height, width), dtype=int)
    for strip in strips:
        own, ctx = strip.own, strip.context
        covered[own.y0 : own.y1, own.x0 : own.x1] += 1
        assert ctx == Box(
            max(0, own.y0 - margin),
            min(height, own.y1 + margin),
            max(0, own.x0 - margin),
            min(width, own.x1 + margin),
        )
        assert ctx.height * ctx.width <= budget
    assert (covered[20:60] == 1).all() and covered[:20].sum() == covered[60:].sum() == 0
    # A budget too small for any strip still covers the rows, with the finest strips.
    tiny = plan_strips(0, 8, 8, 8, 4, 2, 1)
    assert sum(t.own.height * t.own.width for t in tiny) == 64


def test_structure_strips_waste_less_than_fixed_squares() -> None:
    """larsr-x4's structure rows of a 1024 px input at the default budget (coarse margin 34,
    145906 px per strip): fixed squares of the largest side that fit computed 1.51 context px per
    kept px for the first band (rows 0..392) and 1.72 for the next (392..708), the remainder
    slivers reading the full margin; the balanced grid computes 1.30 and 1.46."""
    for y0, y1, worst in ((0, 392, 1.31), (392, 708, 1.47)):
        strips = plan_strips(y0, y1, 1024, 1024, 34, 2, 145906)
        computed = sum(t.context.height * t.context.width for t in strips)
        assert computed / ((y1 - y0) * 1024) < worst
        assert max(t.context.height * t.context.width for t in strips) <= 145906


def test_too_little_margin_would_show_and_enough_does_not() -> None:
    """The test can fail: with a margin below the receptive field the strips disagree."""
    lr = np.random.default_rng(1).random((24, 24, 3), dtype=np.float32)
    short = StructureRows(fake_structure, lr, SCALE, margin=RADIUS - 2, multiple=2, strip_px=12 * 12)
    assert not np.array_equal(short.window(0, 24), whole(lr))
    exact = StructureRows(fake_structure, lr, SCALE, margin=RADIUS + 1, multiple=2, strip_px=12 * 12)
    assert np.array_equal(exact.window(0, 24), whole(lr))


def test_bands_group_tiles_by_their_context_rows() -> None:
    tiles = plan_tiles(40, 60, 16, 4, 2)
    bands = bands_of(tiles)
    assert [len(b.tiles) for b in bands] == [4, 4, 4]
    assert all(t.context.y0 == b.y0 and t.context.y1 == b.y1 for b in bands for t in b.tiles)
    assert [b.y0 for b in bands] == sorted(b.y0 for b in bands)
    assert sum(len(b.tiles) for b in bands) == len(tiles)
    assert bands_of([Tile(Box(0, 4, 0, 4), Box(0, 4, 0, 4))])[0].tiles[0].own == Box(0, 4, 0, 4)


@pytest.mark.parametrize("tile", [8, 14, 20])
@pytest.mark.parametrize("temperature,texture", [(0.0, 1.0), (0.8, 1.0), (0.8, 0.5), (0.8, 0.0)])
def test_two_pass_tiles_are_bit_identical_to_the_untiled_image(
    tiny_model_dir, tile: int, temperature: float, texture: float
) -> None:
    upscaler = Upscaler(tiny_model_dir, device="cpu")
    lr = np.random.default_rng(tile).random((30, 42, 3), dtype=np.float32)
    untiled = upscaler.upscale_array(lr, seed=3, temperature=temperature, texture=texture, tile=0)
    tiled = upscaler.upscale_array(lr, seed=3, temperature=temperature, texture=texture, tile=tile)
    assert len(upscaler.plan(30, 42, tile)) > 1
    assert np.array_equal(untiled, tiled)


def test_two_pass_runs_the_coarse_net_on_little_more_than_the_image(tiny_model_dir) -> None:
    """The point of the second pass: coarse work no longer grows with the full chain's margin."""
    upscaler = Upscaler(tiny_model_dir, device="cpu")
    lr = np.random.default_rng(5).random((48, 64, 3), dtype=np.float32)
    area = {"coarse": 0}
    real = upscaler.sessions["coarse"]

    class Counting:
        def run(self, names, feeds):  # noqa: ANN001 - the onnxruntime signature
            area["coarse"] += feeds["lr"].shape[2] * feeds["lr"].shape[3]
            return real.run(names, feeds)

    upscaler.sessions["coarse"] = Counting()
    upscaler.upscale_array(lr, seed=0, temperature=0.5, tile=12)
    tiles = upscaler.plan(48, 64, 12)
    one_pass = sum(
        t.context.height * t.context.width
        for t in plan_tiles(48, 64, 12, upscaler.manifest.context_margin, 2)
    )
    assert len(tiles) > 4
    assert area["coarse"] < 0.6 * one_pass


def test_later_texture_stages_run_on_windows_that_shrink_towards_the_kept_pixels(tiny_model_dir) -> None:
    """Each stage computes only what the next one reads: the LAR steps cover a tile's own pixels
    plus the LAR and decoder radii, the decoder its own pixels plus its radius, never the whole
    context (and the picture stays the untiled one, which the test above checks)."""
    upscaler = Upscaler(tiny_model_dir, device="cpu")
    rf, s = upscaler.manifest.receptive_field, upscaler.scale
    lr = np.random.default_rng(6).random((48, 64, 3), dtype=np.float32)
    seen: dict[str, list[tuple[int, int]]] = {"condition": [], "lar_step": [], "decoder": []}
    real = dict(upscaler.sessions)

    class Recording:
        def __init__(self, role: str, key: str) -> None:
            self.role, self.key = role, key

        def run(self, names, feeds, options=None):  # noqa: ANN001 - the onnxruntime signature
            shape = feeds[self.key].shape
            if self.role != "lar_step" or int(feeds["t"][0]) == 0:
                seen[self.role].append(tuple(shape[1:3]) if self.role == "lar_step" else tuple(shape[2:4]))
            return real[self.role].run(names, feeds, options)

    upscaler.sessions["condition"] = Recording("condition", "xc")
    upscaler.sessions["lar_step"] = Recording("lar_step", "cond")
    upscaler.sessions["decoder"] = Recording("decoder", "xc")
    upscaler.upscale_array(lr, seed=0, temperature=0.5, tile=16)
    tiles = upscaler.plan(48, 64, 16)
    assert len(tiles) > 4 and len(seen["decoder"]) == len(tiles)
    lr_per_patch = upscaler.manifest.spec.patch_size // upscaler.manifest.spec.index_stride

    def grown(box: Box, by: int, within: Box) -> tuple[int, int]:
        by = -(-by // 2) * 2
        return (
            min(within.y1, box.y1 + by) - max(within.y0, box.y0 - by),
            min(within.x1, box.x1 + by) - max(within.x0, box.x0 - by),
        )

    for tile, cond, lar, dec in zip(tiles, seen["condition"], seen["lar_step"], seen["decoder"], strict=True):
        assert cond == (tile.context.height * s, tile.context.width * s)
        h, w = grown(tile.own, rf["lar"] + rf["decoder"], tile.context)
        assert lar == (h // lr_per_patch, w // lr_per_patch)
        h, w = grown(tile.own, rf["decoder"], tile.context)
        assert dec == (h * s, w * s)
    inner = [d for t, d in zip(tiles, seen["decoder"], strict=True) if d[0] < t.context.height * s]
    assert inner  # some tile's decoder really ran on less than its context
