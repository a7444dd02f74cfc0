"""The Python API and the runtime core on the tiny model: Upscaler, seeded sampling, tiling.

Everything runs real onnxruntime sessions on the randomly initialised tiny model of conftest.py.
Images are kept small (24x32 LR) because the tiny model's tiling margin (~70 LR px) makes every
tile of a small image almost as costly as the whole image.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import psnr

from larsr_cli.errors import LarsrError
from larsr_cli.pipeline import Upscaler
from larsr_cli.sampler import ROWS_PER_JOB, CodeNoise, TemperatureSampler, sample_codes
from larsr_cli.tiling import Box, balanced_spans, grid_of, plan_tiles
from larsr_cli.twopass import window_bytes

H, W = 24, 32


@pytest.fixture(scope="module")
def upscaler(tiny_model_dir) -> Upscaler:
    return Upscaler(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    return np.random.default_rng(0).random((H, W, 3), dtype=np.float32)


# ---- Upscaler / upscale_array ---------------------------------------------------------------------


def test_upscale_array_default_is_uint8_x4(upscaler: Upscaler, lr: np.ndarray) -> None:
    out = upscaler.upscale_array(lr, seed=1)
    assert out.shape == (4 * H, 4 * W, 3)
    assert out.dtype == np.uint8
    assert out.std() > 0  # a real picture, not a constant fill


def test_output_dtypes_agree_and_stay_in_range(upscaler: Upscaler, lr: np.ndarray) -> None:
    f32 = upscaler.upscale_array(lr, seed=1, temperature=0.5, out_dtype=np.float32)
    u8 = upscaler.upscale_array(lr, seed=1, temperature=0.5, out_dtype=np.uint8)
    u16 = upscaler.upscale_array(lr, seed=1, temperature=0.5, out_dtype=np.uint16)
    assert f32.dtype == np.float32 and u16.dtype == np.uint16
    assert f32.shape == u8.shape == u16.shape == (4 * H, 4 * W, 3)
    assert np.isfinite(f32).all() and f32.min() >= 0.0 and f32.max() <= 1.0
    # Quantised by rounding to nearest from the same float result.
    assert np.abs(u8.astype(np.int32) - np.round(f32 * 255).astype(np.int32)).max() <= 1
    assert np.abs(u16.astype(np.int64) - np.round(f32 * 65535).astype(np.int64)).max() <= 1
    assert (u16 % 257 != 0).mean() > 0.5  # really 16-bit, not 8-bit values scaled up


def test_default_temperature_comes_from_the_manifest(upscaler: Upscaler, lr: np.ndarray) -> None:
    assert upscaler.default_temperature == pytest.approx(0.8)
    implicit = upscaler.upscale_array(lr, seed=4)
    explicit = upscaler.upscale_array(lr, seed=4, temperature=0.8)
    argmax = upscaler.upscale_array(lr, seed=4, temperature=0)
    assert np.array_equal(implicit, explicit)
    assert not np.array_equal(implicit, argmax)


def test_pil_api_keeps_alpha_and_matches_the_array_path(upscaler: Upscaler, lr: np.ndarray) -> None:
    from PIL import Image

    rgb8 = (lr * 255 + 0.5).astype(np.uint8)
    alpha = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))
    rgba = np.dstack([rgb8, alpha])
    out = upscaler.upscale(Image.fromarray(rgba), seed=2)
    assert out.mode == "RGBA" and out.size == (4 * W, 4 * H)
    arr = np.asarray(out)
    assert np.array_equal(arr, np.asarray(upscaler.upscale(rgba, seed=2)))  # PIL or array: one picture
    # Alpha is a smooth left-to-right ramp: upscaled, it still rises across the image.
    assert arr[0, 0, 3] < 10 and arr[0, -1, 3] > 245
    half = upscaler.upscale(Image.fromarray(rgb8), seed=2, scale=2)
    assert half.mode == "RGB" and half.size == (2 * W, 2 * H)


def test_pil_api_reads_16_bit_gray_at_full_range(upscaler: Upscaler) -> None:
    """A mode I;16 picture in memory is decoded like a 16-bit PNG, not clipped to 8-bit white."""
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, W).astype(np.uint16), (H, 1))
    out = np.asarray(upscaler.upscale(Image.fromarray(ramp), temperature=0))
    thirds = [out[:, i * 4 * W // 3 : (i + 1) * 4 * W // 3].mean() for i in range(3)]
    # Dark, middle grey, bright: the range survived (PIL's own I;16 -> RGB clips all but 0 to 255).
    assert thirds[0] < 90 and 90 < thirds[1] < 165 and thirds[2] > 165


def test_coarse_array_is_the_structure_under_the_texture(upscaler: Upscaler, lr: np.ndarray) -> None:
    coarse = upscaler.coarse_array(lr)
    assert coarse.shape == (4 * H, 4 * W, 3) and coarse.dtype == np.float32
    assert coarse.min() >= 0.0 and coarse.max() <= 1.0
    full = upscaler.upscale_array(lr, seed=0, temperature=0, out_dtype=np.float32)
    assert not np.array_equal(coarse, full)  # texture is added on top
    odd = upscaler.coarse_array(lr[:-1, :-1])  # padded inside, cropped back
    assert odd.shape == (4 * (H - 1), 4 * (W - 1), 3)


def test_from_pretrained_with_a_folder(tiny_model_dir, lr: np.ndarray, upscaler: Upscaler) -> None:
    other = Upscaler.from_pretrained(str(tiny_model_dir), device="cpu")
    assert other.scale == 4 and other.manifest.name == "tiny"
    small = lr[:8, :10]
    assert np.array_equal(other.upscale_array(small, seed=2), upscaler.upscale_array(small, seed=2))


def test_out_of_range_input_is_clipped(upscaler: Upscaler, lr: np.ndarray) -> None:
    wild = lr * 3.0 - 1.0
    assert np.array_equal(
        upscaler.upscale_array(wild, temperature=0),
        upscaler.upscale_array(np.clip(wild, 0, 1), temperature=0),
    )


@pytest.mark.parametrize(
    ("array", "kwargs", "pattern"),
    [
        (np.zeros((H, W), np.float32), {}, "HxWx3"),
        (np.zeros((H, W, 4), np.float32), {}, "HxWx3"),
        (np.zeros((0, W, 3), np.float32), {}, "empty"),
        (np.zeros((H, W, 3), np.float32), {"temperature": -0.5}, "temperature"),
    ],
    ids=["2d", "4-channels", "empty", "negative-temperature"],
)
def test_bad_arrays_raise_larsr_error(upscaler: Upscaler, array, kwargs, pattern: str) -> None:
    with pytest.raises(LarsrError, match=pattern):
        upscaler.upscale_array(array, **kwargs)


@pytest.mark.parametrize(("h", "w"), [(17, 33), (33, 17), (1, 1), (1, 5), (3, 1)])
def test_odd_sizes_upscale_to_exactly_4x(upscaler: Upscaler, h: int, w: int) -> None:
    rgb = np.random.default_rng(h * 100 + w).random((h, w, 3), dtype=np.float32)
    out = upscaler.upscale_array(rgb, seed=3, out_dtype=np.float32)
    assert out.shape == (4 * h, 4 * w, 3)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


# ---- determinism ----------------------------------------------------------------------------------


def test_seed_determinism_and_temperature_zero(upscaler: Upscaler, lr: np.ndarray) -> None:
    a1 = upscaler.upscale_array(lr, seed=1, temperature=1.0)
    a2 = upscaler.upscale_array(lr, seed=1, temperature=1.0)
    b = upscaler.upscale_array(lr, seed=2, temperature=1.0)
    assert np.array_equal(a1, a2)
    assert (a1 != b).mean() > 0.05  # a different seed draws visibly different texture
    z1 = upscaler.upscale_array(lr, seed=1, temperature=0)
    z2 = upscaler.upscale_array(lr, seed=999, temperature=0)
    assert np.array_equal(z1, z2)


# ---- tile invariance ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "tiles"),
    # "wide" is wider than tile + margin, so one tile's context starts inside the image: its noise
    # window must then come from the global field at that offset, not from its own origin.
    [(H, W, (16, 24)), (23, 33, (16,)), (8, 104, (32,))],
    ids=["even", "odd", "wide"],
)
def test_tiled_output_equals_untiled(upscaler: Upscaler, h: int, w: int, tiles: tuple[int, ...]) -> None:
    rgb = np.random.default_rng(7).random((h, w, 3), dtype=np.float32)
    whole = upscaler.upscale_array(rgb, seed=11, temperature=1.0, tile=0, out_dtype=np.float32)
    assert len(upscaler.plan(h, w, 0)) == 1
    other_seed = upscaler.upscale_array(rgb, seed=12, temperature=1.0, tile=0, out_dtype=np.float32)
    assert psnr(whole, other_seed) < 40  # the texture really is sampled, so equality below means something
    for tile in tiles:
        calls: list[tuple[int, int]] = []
        tiled = upscaler.upscale_array(
            rgb,
            seed=11,
            temperature=1.0,
            tile=tile,
            out_dtype=np.float32,
            progress=lambda done, total, calls=calls: calls.append((done, total)),
        )
        n = len(upscaler.plan(h, w, tile))
        assert n >= 2, f"tile {tile} does not split a {w}x{h} image"
        # Progress moves inside every tile (#11): one call per LAR step of each tile.
        steps = n * upscaler.arch.steps(upscaler.default_texture)
        assert calls == [(i, steps) for i in range(1, steps + 1)]
        assert psnr(whole, tiled) >= 50, f"tile {tile}: {psnr(whole, tiled):.1f} dB"


def test_auto_tile_fits_the_memory_budget(tiny_model_dir, upscaler: Upscaler) -> None:
    assert len(upscaler.plan(H, W, "auto")) == 1  # small images run whole
    per_px = upscaler.bytes_per_lr_pixel()
    budgeted = Upscaler(tiny_model_dir, device="cpu", memory_budget=300 * 300 * per_px)
    arch = budgeted.arch
    # Two-pass (texture on): every texture tile with its context, beside the structure window of
    # its band, fits; so does a structure strip beside that window.
    tiles = budgeted.plan(400, 600, "auto", texture=1.0)
    assert len(tiles) > 1
    rows = max(t.context.height for t in tiles)
    window = window_bytes(rows, 600, budgeted.scale)
    for t in tiles:
        assert (
            t.context.height * t.context.width * arch.texture_bytes_per_lr_pixel() + window
            <= budgeted.memory_budget
        )
    strip = budgeted.strip_pixels(tiles, 600) * arch.structure_bytes_per_lr_pixel()
    assert strip + window <= budgeted.memory_budget
    # Texture 0 runs the structure stages alone, with their own (smaller) margin and cost.
    plain = budgeted.plan(400, 600, "auto", texture=0.0)
    assert budgeted.tile_margin(0.0) < budgeted.manifest.context_margin
    widest = max(t.context.height * t.context.width for t in plain)
    assert widest * arch.structure_bytes_per_lr_pixel() <= budgeted.memory_budget


# ---- CodeNoise ------------------------------------------------------------------------------------


def test_code_noise_window_is_a_pure_function_of_position() -> None:
    big = CodeNoise(3).window(0, 40, 0, 50)
    assert big.shape == (40, 50) and big.min() >= 0.0 and big.max() < 1.0
    fresh = CodeNoise(3)
    part = fresh.window(7, 19, 11, 30)
    assert np.array_equal(part, big[7:19, 11:30])
    # Asking in another order, or again, changes nothing.
    assert np.array_equal(fresh.window(0, 40, 0, 50), big)
    assert np.array_equal(fresh.window(5, 6, 49, 50), big[5:6, 49:50])
    # Far-right windows of a wide image equal the same columns of the full rows.
    assert np.array_equal(CodeNoise(3).window(2, 4, 1000, 1010), CodeNoise(3).window(2, 4, 0, 1010)[:, 1000:])


def test_code_noise_depends_on_seed_and_row() -> None:
    a = CodeNoise(3).window(0, 4, 0, 64)
    b = CodeNoise(4).window(0, 4, 0, 64)
    assert not np.array_equal(a, b)
    assert len({row.tobytes() for row in a}) == 4  # rows are distinct streams
    with pytest.raises(ValueError):
        CodeNoise(-1)


# ---- sample_codes ---------------------------------------------------------------------------------


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_sample_codes_at_zero_temperature_is_argmax() -> None:
    logits = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    assert np.array_equal(sample_codes(logits, 0.0, None), logits.argmax(axis=1))
    # Uniforms, if given, are ignored at T = 0.
    u = np.random.default_rng(1).random(64)
    assert np.array_equal(sample_codes(logits, 0.0, u), logits.argmax(axis=1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_codes_follow_the_softmax(temperature: float) -> None:
    logits = np.array([2.0, 0.5, -1.0, 0.0, 1.0, -3.0], np.float32)
    p = softmax(logits.astype(np.float64) / temperature)
    n = 20_000
    rows = np.repeat(logits[None], n, axis=0)

    # Evenly spaced uniforms: inverse-CDF sampling must hit each code n * p times, up to rounding.
    even = (np.arange(n) + 0.5) / n
    counts = np.bincount(sample_codes(rows, temperature, even), minlength=len(p))
    assert np.abs(counts - n * p).max() <= 2

    # Fixed random uniforms: a chi-square test against the tempered softmax (df = 5, p ~ 1e-4).
    u = np.random.default_rng(123).random(n)
    codes = sample_codes(rows, temperature, u)
    counts = np.bincount(codes, minlength=len(p))
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 25.7, chi2
    # ... and the same draws are *not* distributed like the untempered softmax (the test can fail).
    if temperature != 1.0:
        p1 = softmax(logits.astype(np.float64))
        assert float(((counts - n * p1) ** 2 / (n * p1)).sum()) > 100


def test_sample_codes_edges() -> None:
    logits = np.array([[0.0, 0.0, 0.0, 5.0], [5.0, 0.0, 0.0, 0.0]], np.float32)
    top = np.nextafter(1.0, 0.0)
    codes = sample_codes(logits, 1.0, np.array([top, 0.0]))
    assert codes.tolist() == [3, 0]  # each row uses its own logits; u near 1 is still a real code
    with pytest.raises(ValueError):
        sample_codes(logits, 1.0, None)


def test_two_level_draw_is_the_plain_inverse_cdf() -> None:
    """The block-then-code search must pick the code a full running sum picks (float64
    reference): the speed-up may not change what a seed draws, except at a rounding tie."""
    rng = np.random.default_rng(11)
    rows, k = 5000, 256
    logits = (3 * rng.standard_normal((rows, k))).astype(np.float32)
    u = rng.random(rows)
    for temperature in (0.6, 1.0):
        z = logits.astype(np.float64) / temperature
        cdf = np.cumsum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)
        reference = np.minimum((cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1), k - 1)
        codes = sample_codes(logits, temperature, u)
        assert np.mean(codes == reference) > 0.999
        assert len(np.unique(codes)) > 200


def test_threaded_draws_are_the_single_threaded_codes() -> None:
    """Splitting rows across threads is a speed-up only: a seed must give the same picture
    whatever --threads is (including a last block shorter than the others)."""
    rows = 3 * ROWS_PER_JOB + 123
    rng = np.random.default_rng(7)
    logits = (3 * rng.standard_normal((rows, 64))).astype(np.float32)
    u = rng.random(rows)
    for temperature in (0.6, 1.0):
        one = sample_codes(logits, temperature, u)
        assert np.array_equal(one, sample_codes(logits, temperature, u, workers=2))
        assert np.array_equal(one, sample_codes(logits, temperature, u, workers=3))
        assert len(np.unique(one)) > 32  # the draw is a real spread, not a constant


def test_a_step_drawing_two_codes_gives_each_position_its_own_draw() -> None:
    """A step draws all its codes in one call (rows side by side, as the step graph writes them);
    each position must still get exactly the code a draw of that position alone gives, with its
    own noise: how a model groups positions into steps cannot change what a seed means."""
    patch, hp, wp, k = 4, 6, 5, 64
    box = Box(8, 8 + patch * hp, 4, 4 + patch * wp)  # an index-map window away from the origin
    draw = TemperatureSampler(0.8, seed=5, workers=2).tile(box, patch)
    rng = np.random.default_rng(3)
    logits = (3 * rng.standard_normal((hp * wp, 2, k))).astype(np.float32)
    together = draw(logits, (3, 11))
    alone = [draw(logits[:, slot : slot + 1].copy(), (pos,)) for slot, pos in enumerate((3, 11))]
    assert together.shape == (hp * wp, 2)
    assert np.array_equal(together, np.concatenate(alone, axis=1))
    # The positions matter: the same logits at other positions draw other codes.
    assert not np.array_equal(together, draw(logits, (4, 12)))


# ---- plan_tiles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "tile", "margin", "multiple"),
    [
        (24, 32, 16, 70, 2),
        (40, 56, 24, 72, 2),
        (64, 64, 16, 5, 4),
        (30, 18, 7, 3, 2),
        (96, 40, 32, 8, 8),
        (24, 32, 0, 70, 2),
        (24, 32, 32, 70, 2),
    ],
)
def test_plan_tiles_partition_the_image(h: int, w: int, tile: int, margin: int, multiple: int) -> None:
    tiles = plan_tiles(h, w, tile, margin, multiple)
    owned = np.zeros((h, w), np.int32)
    for t in tiles:
        own, ctx = t.own, t.context
        owned[own.y0 : own.y1, own.x0 : own.x1] += 1
        assert 0 <= ctx.y0 <= own.y0 < own.y1 <= ctx.y1 <= h
        assert 0 <= ctx.x0 <= own.x0 < own.x1 <= ctx.x1 <= w
        for v in (own.y0, own.y1, own.x0, own.x1, ctx.y0, ctx.y1, ctx.x0, ctx.x1):
            assert v % multiple == 0
        # At least the full margin of context on every side that is not the image border.
        assert ctx.y0 == 0 or own.y0 - ctx.y0 >= margin
        assert ctx.x0 == 0 or own.x0 - ctx.x0 >= margin
        assert ctx.y1 == h or ctx.y1 - own.y1 >= margin
        assert ctx.x1 == w or ctx.x1 - own.x1 >= margin
    assert (owned == 1).all()  # every pixel written exactly once
    if tile <= 0 or (tile >= h and tile >= w):
        assert len(tiles) == 1
    else:
        side = -(-tile // multiple) * multiple
        assert len(tiles) == math.ceil(h / side) * math.ceil(w / side) > 1


@pytest.mark.parametrize(
    ("h", "w", "rows", "cols", "margin"), [(1024, 1024, 4, 4, 54), (400, 600, 3, 5, 20), (64, 96, 2, 1, 6)]
)
def test_grid_tiles_partition_the_image_with_equal_contexts(
    h: int, w: int, rows: int, cols: int, margin: int
) -> None:
    ys, xs = balanced_spans(h, rows, margin, 2), balanced_spans(w, cols, margin, 2)
    assert ys is not None and xs is not None
    tiles = grid_of(ys, xs, margin, h, w)
    assert len(tiles) == rows * cols
    owned = np.zeros((h, w), np.int32)
    for t in tiles:
        owned[t.own.y0 : t.own.y1, t.own.x0 : t.own.x1] += 1
        assert t.context.y0 == 0 or t.own.y0 - t.context.y0 >= margin
        assert t.context.y1 == h or t.context.y1 - t.own.y1 >= margin
        assert t.context.x0 == 0 or t.own.x0 - t.context.x0 >= margin
        assert t.context.x1 == w or t.context.x1 - t.own.x1 >= margin
    assert (owned == 1).all()
    # Border tiles own a margin more, so contexts differ by rounding to the multiple only.
    heights = {t.context.height for t in tiles}
    widths = {t.context.width for t in tiles}
    assert max(heights) - min(heights) <= 2 and max(widths) - min(widths) <= 2


def test_auto_plan_computes_fewer_pixels_than_any_fixed_tile_that_fits(tiny_model_dir) -> None:
    """Margins are the cost of tiling: the automatic grid must waste less than every square tile
    size that fits the same budget (the old rule left a sliver tile per axis)."""
    per_px = Upscaler(tiny_model_dir, device="cpu").bytes_per_lr_pixel()
    up = Upscaler(tiny_model_dir, device="cpu", memory_budget=200 * 200 * per_px)
    h, w = 512, 768

    def fits(rows: int, cols: int) -> bool:
        return up.tile_bytes(rows, cols, w, up.tiling_mode(1.0)) <= up.memory_budget

    margin = up.tile_margin(1.0)

    def computed(tiles: list) -> int:
        return sum(t.context.height * t.context.width for t in tiles)

    auto = up.plan(h, w, "auto", texture=1.0)
    assert all(fits(t.context.height, t.context.width) for t in auto)
    fixed = [
        plan_tiles(h, w, side, margin, 2)
        for side in range(16, 400, 2)
        if all(fits(t.context.height, t.context.width) for t in plan_tiles(h, w, side, margin, 2))
    ]
    assert fixed and computed(auto) <= min(computed(t) for t in fixed)
    assert computed(auto) < min(computed(t) for t in fixed) * 0.95 or len(auto) < min(len(t) for t in fixed)


def test_explicit_tiles_are_judged_by_the_memory_they_run_with(tiny_model_dir) -> None:
    """--tile N with texture runs two-pass tiles: the RAM check must use that figure (the one
    --tile auto plans with), refusing exactly when it exceeds the machine's limit."""
    up = Upscaler(tiny_model_dir, device="cpu")
    h, w, tile = 96, 128, 32
    tiles = up.plan(h, w, tile, texture=1.0)
    mode = up.run_mode(1.0, len(tiles))
    need = max(up.tile_bytes(t.context.height, t.context.width, w, mode) for t in tiles)
    one_pass = max(t.context.height * t.context.width for t in tiles) * up.bytes_per_lr_pixel()
    assert need != one_pass
    up.memory_limit = need
    assert len(up.plan(h, w, tile, texture=1.0)) == len(tiles)
    up.memory_limit = need - 1
    with pytest.raises(LarsrError, match=r"tile=32 \(--tile\) needs about"):
        up.plan(h, w, tile, texture=1.0)


def test_plan_tiles_wants_a_padded_image() -> None:
    with pytest.raises(ValueError):
        plan_tiles(25, 32, 16, 8, 2)


def test_upscaler_plan_pads_odd_sizes(upscaler: Upscaler) -> None:
    tiles = upscaler.plan(23, 33, 16)
    m = upscaler.manifest.tile_multiple
    bottom = max(t.own.y1 for t in tiles)
    right = max(t.own.x1 for t in tiles)
    assert bottom >= 23 and right >= 33 and bottom % m == 0 and right % m == 0


# ---- --texture ------------------------------------------------------------------------------------


def test_texture_scales_only_the_decoders_residual(upscaler: Upscaler, lr: np.ndarray) -> None:
    """0 is the coarse net's clean result, 1 the full texture, and anything between is the blend
    export.evaluate scores (so the chosen default is what users get)."""
    coarse = upscaler.coarse_array(lr)
    kw = {"seed": 3, "temperature": 0.5, "tile": 0, "out_dtype": np.float32}
    full = upscaler.upscale_array(lr, texture=1.0, **kw)
    none = upscaler.upscale_array(lr, texture=0.0, **kw)
    half = upscaler.upscale_array(lr, texture=0.5, **kw)
    np.testing.assert_allclose(none, coarse, atol=1e-6)
    assert np.abs(full - coarse).max() > 0.01  # the tiny model's texture is not nothing
    np.testing.assert_allclose(half, np.clip(coarse + 0.5 * (full - coarse), 0, 1), atol=1e-5)


def test_texture_is_tile_invariant(upscaler: Upscaler, lr: np.ndarray) -> None:
    kw = {"seed": 5, "temperature": 0.7, "texture": 0.6}
    assert np.array_equal(upscaler.upscale_array(lr, tile=0, **kw), upscaler.upscale_array(lr, tile=16, **kw))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_texture_out_of_range_is_refused(upscaler: Upscaler, lr: np.ndarray, bad: float) -> None:
    with pytest.raises(LarsrError, match="texture must be between 0 and 1"):
        upscaler.upscale_array(lr, texture=bad)


def test_texture_defaults_to_the_models(upscaler: Upscaler, lr: np.ndarray) -> None:
    assert upscaler.default_texture == upscaler.manifest.default_texture
    assert np.array_equal(
        upscaler.upscale_array(lr, seed=1),
        upscaler.upscale_array(lr, seed=1, texture=upscaler.default_texture),
    )


# ---- alpha ----------------------------------------------------------------------------------------


def test_hard_cut_out_has_no_dark_fringe() -> None:
    """Black under alpha 0 used to bleed into the subject's edge (5th-percentile edge luma 0.57
    against 0.77 inside on this square); colour is now continued under the transparent area."""
    from larsr_cli.registry import resolve_model

    shipped = Upscaler(resolve_model("larsr-x4"), device="cpu")
    yy, xx = np.mgrid[0:32, 0:32]
    inside = (abs(yy - 16) < 10) & (abs(xx - 16) < 10)
    rgb = np.zeros((32, 32, 3), np.float32)
    rgb[inside] = (0.8, 0.75, 0.7)
    out, alpha = shipped.upscale_with_alpha(rgb, inside.astype(np.float32), out_dtype=np.float32)
    luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
    edge, core = (alpha > 0.5) & (alpha < 0.99), alpha > 0.999
    assert edge.sum() > 100
    assert np.percentile(luma[edge], 5) >= 0.95 * luma[core].mean()


def test_heap_trims_between_stages_only_for_tiles_and_large_whole_images(tiny_model_dir) -> None:
    """Trimming between stages bounds a large tile's peak but makes the next stage fault its
    pages in again: a small image run whole keeps its heap, a tiled one or a whole image that
    needs more than half the budget trims, and the picture is the same either way."""
    per_px = Upscaler(tiny_model_dir, device="cpu").bytes_per_lr_pixel()
    up = Upscaler(tiny_model_dir, device="cpu", memory_budget=100 * 100 * per_px)
    small, large = up.plan(40, 40, "auto"), up.plan(80, 80, "auto")
    assert len(small) == len(large) == 1
    assert not up.trims_between_stages(small, 40, 1.0)
    assert up.trims_between_stages(large, 80, 1.0)
    assert up.trims_between_stages(up.plan(40, 40, 16), 40, 1.0)
    lr = np.random.default_rng(5).random((40, 40, 3), dtype=np.float32)
    kept = up.upscale_array(lr, seed=1)
    assert up.arch.release_between_stages is False
    up.memory_budget = 40 * 40 * per_px  # now the same image needs more than half of it
    assert np.array_equal(kept, up.upscale_array(lr, seed=1, tile=0))
    assert up.arch.release_between_stages is True
