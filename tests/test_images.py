"""Round trips of every image kind through load -> (fake x2 upscale) -> save -> reload.

The upscale is faked with nearest-neighbour doubling so that expected output pixels are exactly
known and the tests exercise only the I/O layer. All files are generated in tmp_path.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from larsr_cli import images
from larsr_cli.atomic import TMP_MARKER
from larsr_cli.errors import ImageError
from larsr_cli.images import (
    AlphaFlattenedWarning,
    LoadedImage,
    decode,
    encode_image,
    load_image,
    metadata,
    quantise,
    resize_float,
    resolve_format,
    save_image,
)
from larsr_cli.images.metadata import Meta
from larsr_cli.images.pixels import orient
from larsr_cli.images.png16 import encode_png16
from larsr_cli.images.tiff import encode_tiff

W, H = 12, 8


# ---- helpers ----------------------------------------------------------------------------------


def up2(a: np.ndarray | None) -> np.ndarray | None:
    """Nearest x2: stands in for the model so expected pixels are exact."""
    return None if a is None else np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def roundtrip(src: Path, out: Path, **save_kw) -> tuple[LoadedImage, LoadedImage, Image.Image]:
    """Load, fake-upscale, save like the source, reload; returns (source, reloaded, raw PIL)."""
    li = load_image(src)
    save_image(out, up2(li.rgb), alpha=up2(li.alpha), like=li, **save_kw)
    pil = Image.open(out)
    pil.load()
    return li, load_image(out), pil


def rgb8(w: int = W, h: int = H) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient16(w: int = W, h: int = H, channels: int = 0) -> np.ndarray:
    """Values spanning 0..65535 with most of them not multiples of 257 (i.e. truly 16-bit)."""
    n = w * h * max(1, channels)
    vals = (np.arange(n, dtype=np.int64) * 65535 // (n - 1)).astype(np.uint16)
    return vals.reshape((h, w, channels) if channels else (h, w))


@functools.cache
def srgb_icc() -> bytes:
    """Made once: LittleCMS stamps profiles with the creation time, so two calls may differ."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None, make: str = "LarsrCam") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif.get_ifd(0x8769)[0x9003] = "2026:11:05 12:00:00"  # DateTimeOriginal, in the Exif sub-IFD
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def png_raw(w: int, h: int, color_type: int, depth: int, rows: np.ndarray) -> bytes:
    """A minimal PNG for layouts no installed encoder writes (16-bit gray+alpha)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def u16_of(a: np.ndarray) -> np.ndarray:
    return np.round(a * 65535).astype(np.uint16)


def u8_of(a: np.ndarray) -> np.ndarray:
    return np.round(a * 255).astype(np.uint8)


def assert_one_line(exc: pytest.ExceptionInfo[ImageError], name: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg
    assert name in msg


# ---- 8-bit modes --------------------------------------------------------------------------------


def test_rgb_png_roundtrip_is_exact(tmp_path: Path) -> None:
    px = rgb8()
    Image.fromarray(px).save(tmp_path / "a.png")
    li, back, pil = roundtrip(tmp_path / "a.png", tmp_path / "out.png")
    assert (li.mode, li.bit_depth, li.grayscale, li.alpha, li.format) == ("RGB", 8, False, None, "PNG")
    assert li.rgb.dtype == np.float32 and li.rgb.shape == (H, W, 3)
    assert pil.mode == "RGB" and pil.size == (2 * W, 2 * H)
    assert np.array_equal(np.asarray(pil), up2(px))


def test_rgba_alpha_split_and_reattached(tmp_path: Path) -> None:
    px = np.dstack([rgb8(), np.linspace(0, 255, W * H).reshape(H, W).astype(np.uint8)])
    Image.fromarray(px).save(tmp_path / "a.png")
    li, back, pil = roundtrip(tmp_path / "a.png", tmp_path / "out.png")
    assert li.mode == "RGBA" and li.alpha is not None and li.alpha.shape == (H, W)
    assert pil.mode == "RGBA"
    assert np.array_equal(np.asarray(pil), up2(px))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_stays_grayscale(tmp_path: Path, mode: str) -> None:
    px = np.linspace(0, 255, W * H).reshape(H, W).astype(np.uint8)
    Image.fromarray(px).convert(mode).save(tmp_path / "g.png")
    li, back, pil = roundtrip(tmp_path / "g.png", tmp_path / "out.png")
    assert li.grayscale and li.mode == mode and li.rgb.shape == (H, W, 3)
    assert np.array_equal(li.rgb[..., 0], li.rgb[..., 2])
    assert pil.mode == "L" and back.grayscale
    want = np.asarray(Image.fromarray(px).convert(mode).convert("L"))
    assert np.array_equal(np.asarray(pil), up2(want))


def test_la_keeps_gray_and_alpha(tmp_path: Path) -> None:
    g = np.linspace(0, 255, W * H).reshape(H, W).astype(np.uint8)
    px = np.dstack([g, g[::-1]])
    Image.fromarray(px, mode="LA").save(tmp_path / "la.png")
    li, back, pil = roundtrip(tmp_path / "la.png", tmp_path / "out.png")
    assert li.mode == "LA" and li.grayscale and li.alpha is not None
    assert pil.mode == "LA"
    assert np.array_equal(np.asarray(pil), up2(px))


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    im = Image.fromarray(rgb8()).quantize(16)
    im.save(tmp_path / "p.png")
    li, back, pil = roundtrip(tmp_path / "p.png", tmp_path / "out.png")
    assert li.mode == "P" and li.alpha is None and not li.grayscale
    assert pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), up2(np.asarray(im.convert("RGB"))))


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    im = Image.fromarray(rgb8()).quantize(16)
    im.save(tmp_path / "p.png", transparency=0)
    li, back, pil = roundtrip(tmp_path / "p.png", tmp_path / "out.png")
    assert li.mode == "P" and li.alpha is not None
    assert pil.mode == "RGBA"
    idx = np.asarray(im)
    assert np.array_equal(np.asarray(pil)[..., 3] == 0, up2(idx == 0))


def test_cmyk_without_profile_is_plain_converted(tmp_path: Path) -> None:
    cmyk = Image.fromarray(rgb8()).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=100)
    li, back, pil = roundtrip(tmp_path / "c.jpg", tmp_path / "out.jpg")
    assert li.mode == "CMYK" and li.icc_profile is None and not li.grayscale
    assert pil.mode == "RGB" and pil.size == (2 * W, 2 * H)


def test_cmyk_profile_is_never_carried(tmp_path: Path) -> None:
    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(108)  # header says CMYK; lcms rejects it
    Image.fromarray(rgb8()).convert("CMYK").save(tmp_path / "c.tif", icc_profile=fake_cmyk_icc)
    li = load_image(tmp_path / "c.tif")
    assert li.icc_profile is None and li.rgb.shape == (H, W, 3)


def test_cmyk_with_profile_is_colour_managed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_transform(im, src, dst, outputMode):  # noqa: N803 (Pillow's keyword)
        calls.append(outputMode)
        return im.convert("RGB")

    monkeypatch.setattr(ImageCms, "ImageCmsProfile", lambda f: object())
    monkeypatch.setattr(ImageCms, "createProfile", lambda name: object())
    monkeypatch.setattr(ImageCms, "profileToProfile", fake_transform)
    monkeypatch.setattr(decode, "srgb_icc", lambda: b"SRGB-PROFILE")
    cmyk_icc = bytes(16) + b"CMYK" + bytes(108)
    Image.fromarray(rgb8()).convert("CMYK").save(tmp_path / "c.tif", icc_profile=cmyk_icc)
    li = load_image(tmp_path / "c.tif")
    assert calls == ["RGB"] and li.icc_profile == b"SRGB-PROFILE"


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", ".bmp"])
def test_other_formats_roundtrip(tmp_path: Path, suffix: str) -> None:
    px = rgb8()
    Image.fromarray(px).save(tmp_path / f"a{suffix}", **({"quality": 100} if suffix != ".bmp" else {}))
    li, back, pil = roundtrip(tmp_path / f"a{suffix}", tmp_path / f"out{suffix}", quality=100)
    assert pil.format == li.format and pil.size == (2 * W, 2 * H) and pil.mode == "RGB"
    tol = 0 if suffix in (".tif", ".bmp") else 12
    assert np.abs(np.asarray(pil).astype(int) - u8_of(up2(li.rgb)).astype(int)).mean() <= tol


def test_grayscale_to_webp_is_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((H, W), 128, np.uint8)).save(tmp_path / "g.png")
    li = load_image(tmp_path / "g.png")
    save_image(tmp_path / "g.webp", li.rgb, like=li)
    assert Image.open(tmp_path / "g.webp").mode == "RGB"


# ---- 16-bit and float ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_keeps_16_bits(tmp_path: Path, suffix: str) -> None:
    g = gradient16()
    Image.fromarray(g).save(tmp_path / f"g{suffix}")
    li, back, pil = roundtrip(tmp_path / f"g{suffix}", tmp_path / f"out{suffix}")
    assert (li.mode, li.bit_depth, li.grayscale) == ("I;16", 16, True)
    assert pil.mode == "I;16" and back.bit_depth == 16
    assert np.array_equal(np.asarray(pil), up2(g))
    assert np.asarray(pil).max() > 255


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_keeps_16_bits(tmp_path: Path, suffix: str) -> None:
    g = gradient16(channels=3)
    cv2.imwrite(str(tmp_path / f"c{suffix}"), g[..., ::-1])
    li, back, _ = roundtrip(tmp_path / f"c{suffix}", tmp_path / f"out{suffix}")
    assert (li.mode, li.bit_depth, li.grayscale, li.alpha) == ("RGB;16", 16, False, None)
    assert np.array_equal(u16_of(li.rgb), g)
    assert (back.mode, back.bit_depth) == ("RGB;16", 16)
    written = cv2.imread(str(tmp_path / f"out{suffix}"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16
    assert np.array_equal(written[..., ::-1], up2(g))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgba_keeps_16_bit_alpha(tmp_path: Path, suffix: str) -> None:
    g = gradient16(channels=4)
    cv2.imwrite(str(tmp_path / f"c{suffix}"), g[..., [2, 1, 0, 3]])
    li, back, _ = roundtrip(tmp_path / f"c{suffix}", tmp_path / f"out{suffix}")
    assert (li.mode, li.bit_depth) == ("RGBA;16", 16) and li.alpha is not None
    assert np.array_equal(u16_of(li.alpha), g[..., 3])
    assert back.bit_depth == 16 and back.alpha is not None
    assert np.array_equal(u16_of(back.alpha), up2(g[..., 3]))


def test_16bit_gray_alpha_png(tmp_path: Path) -> None:
    g = gradient16()
    la = np.dstack([g, g[::-1, ::-1]]).astype(">u2")
    (tmp_path / "la.png").write_bytes(png_raw(W, H, 4, 16, la))
    li, back, _ = roundtrip(tmp_path / "la.png", tmp_path / "out.png")
    assert (li.mode, li.bit_depth, li.grayscale) == ("LA;16", 16, True)
    assert np.array_equal(u16_of(li.rgb[..., 1]), g) and np.array_equal(u16_of(li.alpha), g[::-1, ::-1])
    # No writer here does 16-bit gray+alpha: stored as 16-bit RGBA, still 16 bits and alpha.
    assert back.bit_depth == 16 and np.array_equal(u16_of(back.alpha), up2(g[::-1, ::-1]))


def test_16bit_source_to_jpeg_is_8_bit(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "c.png"), gradient16(channels=3))
    li = load_image(tmp_path / "c.png")
    save_image(tmp_path / "c.jpg", li.rgb, like=li)
    assert Image.open(tmp_path / "c.jpg").mode == "RGB"


def test_float_tiff_stays_float(tmp_path: Path) -> None:
    f = np.linspace(0, 1, W * H, dtype=np.float32).reshape(H, W)
    Image.fromarray(f).save(tmp_path / "f.tif")
    li, back, pil = roundtrip(tmp_path / "f.tif", tmp_path / "out.tif")
    assert (li.mode, li.bit_depth, li.grayscale) == ("F", 16, True)
    assert pil.mode == "F"
    assert np.allclose(np.asarray(pil), up2(f), atol=1e-3)
    save_image(tmp_path / "out.png", li.rgb, like=li)
    assert Image.open(tmp_path / "out.png").mode == "I;16"


def test_32bit_int_gray_is_clipped_to_16_bits(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 1000, 70000, -5]], dtype=np.int32)).save(tmp_path / "i.tif")
    li = load_image(tmp_path / "i.tif")
    assert (li.mode, li.bit_depth, li.grayscale) == ("I", 16, True)
    assert list(u16_of(li.rgb[0, :, 0])) == [0, 1000, 65535, 0]


def test_pillow_still_squeezes_16bit_rgb_png_to_8_bits(tmp_path: Path) -> None:
    """Canary: if Pillow learns 16-bit RGB, the OpenCV detours (images/deep.py, png16.py) can go."""
    cv2.imwrite(str(tmp_path / "c.png"), gradient16(channels=3))
    assert Image.open(tmp_path / "c.png").mode == "RGB"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_orientation(tmp_path: Path, suffix: str, orientation: int) -> None:
    """Includes a dark image, whose 8-bit view (all zeros) cannot tell the orientations apart."""
    stored = (np.arange(H * W * 3).reshape(H, W, 3) % 251).astype(np.uint16)
    meta = Meta(exif=exif_bytes(orientation))
    encode = encode_png16 if suffix == ".png" else encode_tiff
    (tmp_path / f"o{suffix}").write_bytes(encode(stored, meta))
    li = load_image(tmp_path / f"o{suffix}")
    pil8 = Image.fromarray(stored.astype(np.uint8))
    pil8.getexif()[0x0112] = orientation
    from PIL import ImageOps

    want = np.asarray(ImageOps.exif_transpose(pil8))
    assert li.bit_depth == 16 and np.array_equal(u16_of(li.rgb), want)


def _pillow_transposed(stored: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's ``exif_transpose`` of ``stored`` (uint8 RGB, or any 2-D uint16 plane as I;16)."""
    from PIL import ImageOps

    im = Image.fromarray(stored)
    im.getexif()[0x0112] = orientation
    return np.asarray(ImageOps.exif_transpose(im))


@pytest.mark.parametrize("orientation", range(0, 10))
def test_orient_is_pillows_exif_transpose(orientation: int) -> None:
    """Out-of-range tags (0, 9) leave the pixels as stored, as Pillow does."""
    rgb = rgb8(5, 3)
    assert np.array_equal(orient(rgb, orientation), _pillow_transposed(rgb, orientation))
    plane = gradient16(5, 3)
    assert np.array_equal(orient(plane, orientation), _pillow_transposed(plane, orientation))


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_tiff_from_another_writer_is_oriented_at_full_depth(
    tmp_path: Path, orientation: int, compression: str | None
) -> None:
    """A TIFF tifffile wrote with an Orientation tag: all 16 bits, turned as Pillow turns 8 bits."""
    stored = gradient16(channels=3)
    tifffile.imwrite(
        tmp_path / "o.tif",
        stored,
        photometric="rgb",
        compression=compression,
        extratags=[(0x0112, "H", 1, orientation, True)],
    )
    li = load_image(tmp_path / "o.tif")
    want = np.dstack([_pillow_transposed(stored[..., c], orientation) for c in range(3)])
    assert li.bit_depth == 16 and np.array_equal(u16_of(li.rgb), want)


# ---- TIFF output (tifffile) ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [0, 2, 3, 4], ids=["gray", "gray-alpha", "rgb", "rgba"])
def test_16bit_tiff_roundtrips_pixels_icc_and_dpi(tmp_path: Path, channels: int) -> None:
    """Read back by tifffile itself (not our decoder): exact samples, deflate, profile, resolution."""
    px = gradient16(channels=channels)
    gray = channels in (0, 2)
    colour = px if channels == 0 else px[..., 0] if gray else px[..., :3]
    rgb = colour.astype(np.float32) / 65535
    alpha = px[..., -1].astype(np.float32) / 65535 if channels in (2, 4) else None
    icc = bytes(16) + (b"GRAY" if gray and channels == 0 else b"RGB ") + bytes(108)
    like = LoadedImage(
        rgb=rgb, mode="I;16", bit_depth=16, grayscale=gray, icc_profile=icc, dpi=(300.0, 150.0)
    )
    save_image(tmp_path / "out.tif", rgb, alpha=alpha, like=like)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        got = page.asarray()
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE and page.predictor == 2
        assert page.tags["InterColorProfile"].value == icc
        assert page.tags["XResolution"].value == (300, 1) and page.tags["YResolution"].value == (150, 1)
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.INCH
    if channels == 2:  # 16-bit gray+alpha is stored as RGBA, which every reader handles
        want = np.dstack([px[..., 0]] * 3 + [px[..., 1]])
    else:
        want = px
    assert got.dtype == np.uint16 and np.array_equal(got, want)
    pil = Image.open(tmp_path / "out.tif")
    assert pil.info["icc_profile"] == icc and pil.info["dpi"] == pytest.approx((300, 150))


def test_float_tiff_is_written_as_float_samples(tmp_path: Path) -> None:
    f = np.linspace(0, 1, W * H, dtype=np.float32).reshape(H, W)
    like = LoadedImage(rgb=np.dstack([f] * 3), mode="F", bit_depth=16, grayscale=True)
    save_image(tmp_path / "f.tif", like.rgb, like=like)
    with tifffile.TiffFile(tmp_path / "f.tif") as tif:
        got = tif.pages[0].asarray()
    assert got.dtype == np.float32 and np.allclose(got, f, atol=1e-6)


def test_tiff_exif_keeps_interop_and_drops_pixel_tags(tmp_path: Path) -> None:
    """The EXIF splice: sub-directories nested two deep survive; the source's layout tags do not."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    ifd = ImageFileDirectory_v2(prefix=b"II")
    ifd[0x010F] = "LarsrCam"
    ifd[256] = 9999  # ImageWidth of some other file: must not replace ours
    ifd[0x8769] = {0x9003: "2026:11:05 12:00:00", 0xA005: {1: "R98"}}
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8)
    like = LoadedImage(rgb=np.zeros((H, W, 3), np.float32), exif=exif)
    save_image(tmp_path / "e.tif", like.rgb, like=like)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns on offsets that point nowhere
        pil = Image.open(tmp_path / "e.tif")
        got = pil.getexif()
        assert pil.size == (W, H) and got.get(0x010F) == "LarsrCam"
        assert got.get_ifd(0x8769).get(0x9003) == "2026:11:05 12:00:00"
        assert got.get_ifd(0xA005) == {1: "R98"}
        pil.close()


def test_unserialisable_tiff_exif_is_dropped_not_fatal(tmp_path: Path) -> None:
    like = LoadedImage(rgb=np.zeros((H, W, 3), np.float32), exif=b"Exif\x00\x00garbage")
    save_image(tmp_path / "e.tif", like.rgb, like=like)
    assert np.asarray(Image.open(tmp_path / "e.tif")).shape == (H, W, 3)


# ---- the one rounding rule -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_quantise_rounds_half_to_even_like_np_rint(dtype: type) -> None:
    """The rule the training data and benchmarks use (``np.rint``), NaN to 0, clipped."""
    maxval = np.iinfo(dtype).max
    halves = (np.arange(0, 40, dtype=np.float32) + np.float32(0.5)) / np.float32(maxval)
    sweep = np.concatenate([np.linspace(-0.1, 1.1, 5001, dtype=np.float32), halves])
    want = np.clip(np.rint(sweep * np.float32(maxval)), 0, maxval).astype(dtype)
    assert np.array_equal(quantise(sweep, dtype), want)
    assert quantise(np.array([np.nan], np.float32), dtype)[0] == 0


def test_pipeline_and_writers_share_one_quantise() -> None:
    from larsr_cli import pipeline
    from larsr_cli.images import encode

    assert pipeline.quantise is quantise and encode.quantise is quantise


# ---- metadata ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_and_exif_carried_and_stripped(tmp_path: Path, suffix: str) -> None:
    icc = srgb_icc()
    Image.fromarray(rgb8()).save(tmp_path / f"a{suffix}", icc_profile=icc, exif=exif_bytes())
    li, back, pil = roundtrip(tmp_path / f"a{suffix}", tmp_path / f"out{suffix}")
    assert li.icc_profile == icc and back.icc_profile == icc
    assert pil.getexif().get(0x010F) == "LarsrCam"
    assert pil.getexif().get_ifd(0x8769).get(0x9003) == "2026:11:05 12:00:00"
    li2, back2, pil2 = roundtrip(tmp_path / f"a{suffix}", tmp_path / f"bare{suffix}", strip_metadata=True)
    assert back2.icc_profile is None and back2.exif is None
    assert pil2.getexif().get(0x010F) is None


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_carries_icc_exif_dpi(tmp_path: Path, suffix: str) -> None:
    cv2.imwrite(str(tmp_path / "c.png"), gradient16(channels=3))
    li = load_image(tmp_path / "c.png")
    li.icc_profile, li.exif, li.dpi = srgb_icc(), exif_bytes(), (300.0, 300.0)
    save_image(tmp_path / f"out{suffix}", up2(li.rgb), like=li)
    pil = Image.open(tmp_path / f"out{suffix}")
    assert pil.info.get("icc_profile") == srgb_icc()
    assert pil.getexif().get(0x010F) == "LarsrCam"
    assert pil.getexif().get_ifd(0x8769).get(0x9003) == "2026:11:05 12:00:00"
    assert pil.info["dpi"] == pytest.approx((600, 600), rel=1e-3)


def test_gray_icc_not_put_on_rgb_output(tmp_path: Path) -> None:
    li = LoadedImage(rgb=np.zeros((H, W, 3), np.float32), icc_profile=bytes(16) + b"GRAY" + bytes(108))
    save_image(tmp_path / "out.png", li.rgb, like=li)
    assert "icc_profile" not in Image.open(tmp_path / "out.png").info


def smooth8(w: int = W, h: int = H) -> np.ndarray:
    """Lossy codecs keep smooth content close, so orientation mistakes stand out."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)]).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_exif_orientation_applied_and_reset(tmp_path: Path, suffix: str) -> None:
    px = smooth8()
    Image.fromarray(px).save(tmp_path / f"o{suffix}", exif=exif_bytes(6), quality=100)
    li, back, pil = roundtrip(tmp_path / f"o{suffix}", tmp_path / f"out{suffix}", quality=100)
    assert li.size == (H, W)  # rotated: width and height swapped
    exif = Image.Exif()
    exif.load(li.exif)
    assert exif.get(0x0112) == 1 and exif.get(0x010F) == "LarsrCam"
    assert pil.size == (2 * H, 2 * W) and pil.getexif().get(0x0112) == 1
    rotated = np.rot90(px, -1)  # orientation 6: stored rotated 90 degrees counter-clockwise
    tol = 0 if suffix == ".png" else 4
    assert np.abs(u8_of(li.rgb).astype(int) - rotated).mean() <= tol


def test_exif_orientation_patch_keeps_other_bytes() -> None:
    raw = exif_bytes(8)
    patched = metadata.upright_exif(raw)
    assert patched is not None and len(patched) == len(raw)
    assert sum(a != b for a, b in zip(raw, patched, strict=True)) == 1


def test_tiff_orientation_applied(tmp_path: Path) -> None:
    px = rgb8()
    Image.fromarray(px).save(tmp_path / "o.tif", exif=exif_bytes(6))
    li = load_image(tmp_path / "o.tif")
    assert np.array_equal(u8_of(li.rgb), np.rot90(px, -1))


def test_dpi_scaled_to_keep_print_size(tmp_path: Path) -> None:
    Image.fromarray(rgb8()).save(tmp_path / "a.png", dpi=(300, 150))
    li, back, pil = roundtrip(tmp_path / "a.png", tmp_path / "out.jpg")
    assert pil.info["dpi"] == (600, 300)
    li, back, pil = roundtrip(tmp_path / "a.png", tmp_path / "out.tif")
    assert pil.info["dpi"] == pytest.approx((600, 300), rel=1e-3)


# ---- alpha into formats without alpha, encoding, formats ----------------------------------------


def test_jpeg_flattens_alpha_on_white_with_warning(tmp_path: Path) -> None:
    rgb = np.zeros((H, W, 3), np.float32)
    alpha = np.zeros((H, W), np.float32)
    alpha[:, : W // 2] = 1.0
    with pytest.warns(AlphaFlattenedWarning):
        save_image(tmp_path / "out.jpg", rgb, alpha=alpha)
    px = np.asarray(Image.open(tmp_path / "out.jpg"))
    assert px[:, -1].min() > 240 and px[:, 0].max() < 15


def test_encode_image_bytes(tmp_path: Path) -> None:
    Image.fromarray(rgb8()).save(tmp_path / "a.webp", quality=90)
    li = load_image(tmp_path / "a.webp")
    data = encode_image(up2(li.rgb), like=li)
    pil = Image.open(io.BytesIO(data))
    assert pil.format == "WEBP" and pil.size == (2 * W, 2 * H)
    assert Image.open(io.BytesIO(encode_image(li.rgb, format="png"))).format == "PNG"
    assert images.save_bytes is encode_image


def test_load_from_bytes_and_stream(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb8()).save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (W, H)
    assert load_image(io.BytesIO(buf.getvalue())).size == (W, H)
    with pytest.raises(ImageError, match="<stdin>"):
        load_image(b"not an image", name="<stdin>")


def test_resolve_format() -> None:
    assert resolve_format("JPG") == "JPEG" and resolve_format(None, "x/y.TIFF") == "TIFF"
    assert resolve_format("png", "y.jpg") == "PNG"
    with pytest.raises(ImageError, match="gif"):
        resolve_format("gif")
    with pytest.raises(ImageError, match="no suffix|''"):
        resolve_format(None, "no_suffix")


def test_bad_arrays_are_programming_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 5), np.float32))
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32), alpha=np.zeros((3, 4)))
    assert not list(tmp_path.iterdir())


def test_nan_and_out_of_range_are_clamped(tmp_path: Path) -> None:
    rgb = np.array([[[np.nan, -1.0, 2.0]]], np.float32)
    save_image(tmp_path / "x.png", rgb)
    assert np.asarray(Image.open(tmp_path / "x.png"))[0, 0].tolist() == [0, 0, 255]


# ---- bad inputs ----------------------------------------------------------------------------------


def _truncated(tmp_path: Path, suffix: str) -> Path:
    buf = io.BytesIO()
    Image.fromarray(rgb8(64, 64)).save(buf, format="PNG" if suffix == ".png" else "JPEG")
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p / "missing.png", "no such file"),
        (lambda p: p, "directory"),
        (lambda p: (p / "t.png").write_text("hello, not an image\n") and p / "t.png", "not an image"),
        (lambda p: (p / "z.png").write_bytes(b"") or p / "z.png", "empty"),
        (lambda p: _truncated(p, ".png"), "truncated"),
        (lambda p: _truncated(p, ".jpg"), "truncated"),
    ],
    ids=["missing", "directory", "text", "zero-size", "truncated-png", "truncated-jpeg"],
)
def test_bad_inputs_raise_one_line(tmp_path: Path, make, pattern: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageError, match=pattern) as exc:
        load_image(path)
    assert_one_line(exc, str(path))


def test_max_pixels_limit(tmp_path: Path) -> None:
    Image.fromarray(rgb8()).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="too large") as exc:
        load_image(tmp_path / "a.png", max_pixels=W * H - 1)
    assert_one_line(exc, "a.png")
    assert load_image(tmp_path / "a.png", max_pixels=W * H).size == (W, H)


@pytest.mark.parametrize("limit", [W * H - 1, (W * H) // 2 - 1], ids=["warning-level", "error-level"])
def test_pillow_decompression_bomb_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    Image.fromarray(rgb8()).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning leaks out either
        with pytest.raises(ImageError, match="bomb|too large") as exc:
            load_image(tmp_path / "a.png")
    assert_one_line(exc, "a.png")


# ---- atomic writes -------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TMP_MARKER in p.name]


def test_existing_output_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    with pytest.raises(ImageError, match="exists; pass overwrite=True") as exc:
        save_image(out, np.zeros((H, W, 3), np.float32))
    assert_one_line(exc, "out.png")
    assert out.read_bytes() == b"precious"
    save_image(out, np.zeros((H, W, 3), np.float32), overwrite=True)
    assert Image.open(out).size == (W, H) and not _leftovers(tmp_path)


def test_output_appearing_during_write_is_not_clobbered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.png"
    real_save = Image.Image.save

    def racing_save(self, fp, *args, **kwargs):
        out.write_bytes(b"someone else")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", racing_save)
    with pytest.raises(ImageError, match="exists"):
        save_image(out, np.zeros((H, W, 3), np.float32))
    assert out.read_bytes() == b"someone else" and not _leftovers(tmp_path)


@pytest.mark.parametrize("error", [RuntimeError("encoder blew up"), KeyboardInterrupt()])
def test_failed_save_leaves_no_temp_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise error

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(type(error)):
        save_image(out, np.zeros((H, W, 3), np.float32), overwrite=True)
    assert out.read_bytes() == b"precious" and not _leftovers(tmp_path)


def test_failed_16bit_save_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    li = LoadedImage(rgb=np.zeros((H, W, 3), np.float32), mode="RGB;16", bit_depth=16)
    with pytest.raises(ImageError, match="cannot write"):
        save_image(tmp_path / "out.png", li.rgb, like=li)
    assert not list(tmp_path.iterdir())


def test_output_permissions_follow_umask(tmp_path: Path) -> None:
    out = save_image(tmp_path / "out.png", np.zeros((H, W, 3), np.float32))
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_missing_output_folders_are_created(tmp_path: Path) -> None:
    out = save_image(tmp_path / "a" / "b" / "out.png", np.zeros((H, W, 3), np.float32))
    assert out.is_file()


def test_output_under_a_file_is_an_image_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ImageError) as exc:
        save_image(tmp_path / "file" / "out.png", np.zeros((H, W, 3), np.float32))
    assert_one_line(exc, "out.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_directory_is_an_image_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageError, match="cannot write") as exc:
            save_image(folder / "out.png", np.zeros((H, W, 3), np.float32))
        assert_one_line(exc, "out.png")
    finally:
        folder.chmod(0o700)


def test_unwritable_directory_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same as above for root (CI containers), by making mkstemp fail as the OS would."""

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(ImageError, match="Permission denied") as exc:
        save_image(tmp_path / "out.png", np.zeros((H, W, 3), np.float32))
    assert_one_line(exc, "out.png")


# ---- resampling ----------------------------------------------------------------------------------


def test_resize_float_shapes_and_range() -> None:
    img = np.random.default_rng(0).random((H, W, 3), dtype=np.float32)
    small = resize_float(img, (W // 2, H // 2))
    assert small.shape == (H // 2, W // 2, 3) and small.dtype == np.float32
    big = resize_float(img, (W * 4, H * 4))
    assert big.shape == (H * 4, W * 4, 3) and big.min() >= 0.0 and big.max() <= 1.0
    alpha = resize_float(np.eye(H, W, dtype=np.float32), (W * 4, H * 4))
    assert alpha.shape == (H * 4, W * 4) and 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert np.allclose(resize_float(np.full((8, 8), 0.25, np.float32), (2, 2)), 0.25)


@pytest.mark.parametrize("bits", [8, 16])
def test_integer_pixels_are_written_like_float_pixels(tmp_path, bits):
    """The batch engine hands over uint8/uint16 outputs (4x less memory than float32)."""
    rng = np.random.default_rng(bits)
    dtype = np.uint8 if bits == 8 else np.uint16
    ints = rng.integers(0, np.iinfo(dtype).max + 1, size=(9, 13, 3), dtype=dtype)
    src = tmp_path / f"src{bits}.png"
    if bits == 8:
        Image.fromarray(ints).save(src)
    else:
        cv2.imwrite(str(src), ints[..., ::-1])
    like = load_image(src)
    assert like.bit_depth == bits
    from_ints = save_image(tmp_path / "ints.png", ints, like=like)
    floats = ints.astype(np.float32) / np.iinfo(dtype).max
    from_floats = save_image(tmp_path / "floats.png", floats, like=like)
    a = cv2.imread(str(from_ints), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(from_floats), cv2.IMREAD_UNCHANGED)
    assert a.dtype == dtype and np.array_equal(a, b)
    assert np.array_equal(a[..., ::-1], ints)


def test_only_raster_photo_decoders_run_whatever_the_name(tmp_path):
    """An EPS (or PSD, ICO, ...) named .png is refused before any decoder of it runs."""
    eps = tmp_path / "photo.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(eps)
    ico = tmp_path / "icon.png"
    Image.new("RGB", (16, 16), "red").save(ico, format="ICO")
    with pytest.raises(ImageError, match="not an image"):
        load_image(ico)


@pytest.mark.parametrize("overwrite", [False, True])
def test_swapped_temp_name_is_never_chmodded_or_published(tmp_path: Path, overwrite: bool) -> None:
    """In a folder others can write to, the temp name may be pointed at another file mid-write:
    that file keeps its mode, is not linked to the output, and the write fails in one line."""
    from larsr_cli.atomic import atomic_write

    out = tmp_path / "out.png"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's")
    os.chmod(victim, 0o600)
    with pytest.raises(ImageError, match="was replaced by another file") as exc:
        with atomic_write(out, overwrite=overwrite) as fh:
            fh.write(b"ours")
            (tmp_name,) = _leftovers(tmp_path)
            os.replace(victim, tmp_path / tmp_name)  # the attacker's swap
    assert_one_line(exc, "out.png")
    assert not out.exists()
    (tmp_name,) = _leftovers(tmp_path)
    swapped = tmp_path / tmp_name
    assert swapped.read_bytes() == b"someone else's" and (swapped.stat().st_mode & 0o777) == 0o600
