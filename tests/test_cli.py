"""End-to-end tests of ``larsr upscale``: click's runner in-process and the real ``larsr`` command.

Real images (made here, small), real onnxruntime on the tiny model of conftest.py. What is asserted
is what a user sees: files appear (or do not), with the right size, mode and metadata; the exit
code; one ``larsr: error:`` line per problem and never a traceback; no temporary file left behind.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import psnr as shared_psnr
from PIL import Image, ImageCms

from larsr_cli.arch import LarSR
from larsr_cli.atomic import TMP_MARKER
from larsr_cli.cli import main
from larsr_cli.images import resize_float
from larsr_cli.pipeline import Upscaler

W, H = 16, 12  # LR size of most test images
TW, TH = 32, 24  # big enough to be split by --tile 16 / 24 (and slow enough to interrupt)
MW, MH = 12, 8  # tiny images for the image-mode round trips
PNG_SIG = b"\x89PNG\r\n\x1a\n"
SUMMARY = re.compile(r"(\d+) done, (\d+) skipped, (\d+) failed in [\d.]+ s")


# ---- helpers ----------------------------------------------------------------------------------


def rgb8(w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png(path: Path, w: int = W, h: int = H, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb8(w, h, seed)).save(path)
    return path


@functools.cache
def srgb_icc() -> bytes:
    """Made once: LittleCMS stamps profiles with the creation time, so two calls may differ."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "LarsrCam"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """On 8-bit pixels, as the CLI writes them."""
    return shared_psnr(a, b, peak=255.0)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if TMP_MARKER in p.name]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("larsr: error:")]


def larsr_command() -> list[str]:
    exe = shutil.which("larsr")
    return [exe] if exe else [sys.executable, "-m", "larsr_cli.cli"]


@pytest.fixture
def cli(tiny_model_dir: Path):
    """``cli(*args, input=..., before=[...])`` runs ``larsr [before] upscale ARGS --model tiny``."""

    def run(
        *args: object, input: bytes | None = None, before: tuple[str, ...] = (), model: bool = True
    ) -> Result:
        argv = [*before, "upscale", *map(str, args)]
        if model:
            argv += ["--model", str(tiny_model_dir)]
        return CliRunner().invoke(main, argv, input=input)

    return run


@pytest.fixture
def sub(tiny_model_dir: Path):
    """Runs the installed ``larsr`` command as a user would."""

    def run(
        *args: object, input: bytes | None = None, before: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        cmd = [*larsr_command(), *before, "upscale", *map(str, args), "--model", str(tiny_model_dir)]
        return subprocess.run(cmd, input=input, capture_output=True, timeout=60, check=False)

    return run


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output


def assert_clean_failure(result: Result, *needles: str) -> str:
    """Exit 1, exactly one error line containing every needle, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---- single file, folders, stdin/stdout --------------------------------------------------------------


def test_single_file(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "photo.png")
    out = tmp_path / "photo_x4.png"
    result = cli(src, "-o", out)
    assert_ok(result)
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (4 * W, 4 * H))
    summary = SUMMARY.search(result.stderr)
    assert summary and summary.groups() == ("1", "0", "0"), result.stderr
    assert "s per output megapixel" in result.stderr
    assert files_under(tmp_path) == ["photo.png", "photo_x4.png"]


def test_single_file_subprocess(sub, tmp_path: Path) -> None:
    src = write_png(tmp_path / "photo.png")
    out = tmp_path / "out" / "big.png"
    proc = sub(src, "-o", out, "--threads", "1")
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    assert re.search(rb"1 done, 0 skipped, 0 failed", proc.stderr)
    with Image.open(out) as im:
        assert im.size == (4 * W, 4 * H)


def test_several_files_into_a_folder(cli, tmp_path: Path) -> None:
    a = write_png(tmp_path / "a.png", seed=1)
    b = tmp_path / "b.jpg"
    Image.fromarray(rgb8(20, 12, seed=2)).save(b, quality=90)
    result = cli(a, b, "-o", tmp_path / "out", "--suffix", "_x4")
    assert_ok(result)
    assert files_under(tmp_path / "out") == ["a_x4.png", "b_x4.jpg"]
    with Image.open(tmp_path / "out" / "b_x4.jpg") as im:
        assert (im.format, im.size) == ("JPEG", (80, 48))


def test_folder_with_nested_dirs(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "top.png", 12, 8)
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rgb8(10, 6)).save(src / "sub" / "mid.jpg")
    Image.fromarray(rgb8(8, 8)).save(src / "sub" / "deeper" / "low.webp")
    (src / "sub" / "notes.txt").write_text("not an image, not an input")

    flat = cli(src, "-o", tmp_path / "flat")
    assert_ok(flat)
    assert files_under(tmp_path / "flat") == ["top.png"]

    deep = cli(src, "-o", tmp_path / "deep", "--recursive", "--suffix", "_x4")
    assert_ok(deep)
    assert files_under(tmp_path / "deep") == ["sub/deeper/low_x4.webp", "sub/mid_x4.jpg", "top_x4.png"]
    sizes = {}
    for name in files_under(tmp_path / "deep"):
        with Image.open(tmp_path / "deep" / name) as im:
            sizes[name] = im.size
    assert sizes == {"sub/deeper/low_x4.webp": (32, 32), "sub/mid_x4.jpg": (40, 24), "top_x4.png": (48, 32)}


def test_empty_folder_hints_at_recursive(cli, tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "sub" / "only.png", 8, 8)
    result = cli(tmp_path / "in", "-o", tmp_path / "out")
    assert_clean_failure(result, "no images", "--recursive")
    assert not (tmp_path / "out").exists()


def test_stdin_to_stdout(cli, tmp_path: Path) -> None:
    data = write_png(tmp_path / "in.png").read_bytes()
    result = cli("-", "-o", "-", "--seed", "3", input=data)
    assert_ok(result)
    assert result.stdout_bytes.startswith(PNG_SIG)  # nothing but the image on stdout
    with Image.open(io.BytesIO(result.stdout_bytes)) as im:
        assert (im.format, im.size) == ("PNG", (4 * W, 4 * H))
    # Same bytes as writing to a file with the same seed.
    assert_ok(cli(tmp_path / "in.png", "-o", tmp_path / "file.png", "--seed", "3"))
    assert (tmp_path / "file.png").read_bytes() == result.stdout_bytes


def test_stdin_to_stdout_subprocess_with_json(sub, tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(rgb8()).save(jpeg, format="JPEG", quality=92)
    proc = sub("-", "-o", "-", "--json", input=jpeg.getvalue())
    assert proc.returncode == 0, proc.stderr.decode()
    with Image.open(io.BytesIO(proc.stdout)) as im:
        assert (im.format, im.size) == ("JPEG", (4 * W, 4 * H))  # same format as the input
    report = json.loads(proc.stderr)  # the report moves to stderr when stdout carries the image
    assert report["done"] == 1 and report["results"][0]["input"] == "<stdin>"


def test_stdout_takes_one_input(cli, tmp_path: Path) -> None:
    a = write_png(tmp_path / "a.png")
    assert_clean_failure(cli(a, a, "-o", "-"), "exactly one input")
    assert_clean_failure(cli(a, "-o", "-", "--samples", "2"), "one sample")


# ---- options ---------------------------------------------------------------------------------------


def test_samples_are_seeds_seed_to_seed_plus_n(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")
    result = cli(src, "-o", tmp_path / "out", "--samples", "3", "--seed", "5")
    assert_ok(result)
    names = ["p_s5.png", "p_s6.png", "p_s7.png"]
    assert files_under(tmp_path / "out") == names
    blobs = [(tmp_path / "out" / n).read_bytes() for n in names]
    assert len(set(blobs)) == 3  # three different textures at the default temperature
    assert_ok(cli(src, "-o", tmp_path / "one.png", "--seed", "6"))
    assert (tmp_path / "one.png").read_bytes() == blobs[1]  # sample s6 is exactly seed 6


def test_json_report(cli, tmp_path: Path) -> None:
    good = write_png(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_text("not a picture")
    result = cli(tmp_path / "in", "-o", tmp_path / "out", "--json", "--seed", "2", "-t", "0.5")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["model"] == "tiny" and report["device"] == "cpu"
    assert (report["done"], report["skipped"], report["failed"]) == (1, 0, 1)
    assert report["seconds_per_megapixel"] > 0
    by_input = {Path(r["input"]).name: r for r in report["results"]}
    ok = by_input[good.name]
    assert ok["status"] == "done" and (ok["width"], ok["height"]) == (4 * W, 4 * H)
    assert ok["seed"] == 2 and ok["temperature"] == 0.5
    assert Path(ok["output"]).is_file()
    bad = by_input["bad.png"]
    assert bad["status"] == "failed" and "not an image" in bad["error"]
    assert files_under(tmp_path / "out") == ["good.png"]


def test_scale_resamples_the_x4_result(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")
    assert_ok(cli(src, "-o", tmp_path / "x4.png", "--seed", "1"))
    for scale, size in [("2", (2 * W, 2 * H)), ("2.5", (40, 30)), ("1", (W, H))]:
        assert_ok(cli(src, "-o", tmp_path / f"s{scale}.png", "--seed", "1", "--scale", scale))
        with Image.open(tmp_path / f"s{scale}.png") as im:
            assert im.size == size
    # A proper (area) filter: close to box-downsampling the x4 image, unlike naive decimation.
    with Image.open(tmp_path / "x4.png") as big:
        box = np.asarray(big.resize((2 * W, 2 * H), Image.Resampling.BOX))
        nearest = np.asarray(big.resize((2 * W, 2 * H), Image.Resampling.NEAREST))
    assert psnr(pixels(tmp_path / "s2.png"), box) >= 40
    assert psnr(pixels(tmp_path / "s2.png"), nearest) < 35


@pytest.mark.parametrize("scale", ["5", "0.5"])
def test_scale_out_of_range_fails_before_any_work(cli, tmp_path: Path, scale: str) -> None:
    src = write_png(tmp_path / "p.png")
    src.with_name("q.png").write_bytes(src.read_bytes())
    result = cli(src, src.with_name("q.png"), "-o", tmp_path / "out", "--scale", scale)
    assert_clean_failure(result, "--scale")  # once for the run, not once per image
    assert not (tmp_path / "out").exists()


def test_format_quality_and_suffix(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")
    assert_ok(cli(src, "-o", tmp_path / "hi", "--format", "jpg", "--quality", "95"))
    assert_ok(cli(src, "-o", tmp_path / "lo", "--format", "jpeg", "--quality", "10", "--suffix", "-small"))
    assert_ok(cli(src, "-o", tmp_path / "wp", "--format", "webp"))
    hi, lo = tmp_path / "hi" / "p.jpg", tmp_path / "lo" / "p-small.jpg"
    for path, fmt in [(hi, "JPEG"), (lo, "JPEG"), (tmp_path / "wp" / "p.webp", "WEBP")]:
        with Image.open(path) as im:
            assert (im.format, im.size) == (fmt, (4 * W, 4 * H))
    assert lo.stat().st_size < hi.stat().st_size


def test_output_suffix_must_agree_with_format(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")
    assert_clean_failure(cli(src, "-o", tmp_path / "o.jpg", "--format", "webp"), "o.jpg", "--format")
    assert_clean_failure(cli(src, "-o", tmp_path / "o.gif"), "o.gif")
    assert files_under(tmp_path) == ["p.png"]
    assert_ok(cli(src, "-o", tmp_path / "o.JPEG", "--format", "jpg", "-q"))
    with Image.open(tmp_path / "o.JPEG") as im:
        assert im.format == "JPEG"


def test_device_threads_and_quiet(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png", 12, 8)
    result = cli(src, "-o", tmp_path / "o.png", "--device", "cpu", "--threads", "1", "--quiet")
    assert_ok(result)
    assert result.output == ""  # --quiet: no summary, nothing at all
    assert_clean_failure(cli(src, "-o", tmp_path / "x.png", "--device", "tpu"), "--device")
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        assert_clean_failure(
            cli(src, "-o", tmp_path / "x.png", "--device", "cuda"), "CUDA", "pip uninstall -y onnxruntime"
        )
    assert not (tmp_path / "x.png").exists()


def test_bad_option_values_are_usage_errors(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png", 12, 8)
    for args in (["--tile", "-1"], ["--tile", "big"], ["--samples", "0"], ["--temperature", "-1"]):
        result = cli(src, "-o", tmp_path / "o.png", *args)
        assert result.exit_code == 2, (args, result.output)
        assert args[0] in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists()


# ---- overwrite policy --------------------------------------------------------------------------------


def test_existing_output_is_refused_skipped_or_overwritten(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")
    out = tmp_path / "o.png"
    out.write_bytes(b"precious")

    refused = cli(src, "-o", out)
    assert_clean_failure(refused, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"

    skipped = cli(src, "-o", out, "--skip-existing")
    assert_ok(skipped)
    assert SUMMARY.search(skipped.stderr).groups() == ("0", "1", "0")
    assert out.read_bytes() == b"precious"

    assert_clean_failure(cli(src, "-o", out, "--overwrite", "--skip-existing"), "contradict")
    assert out.read_bytes() == b"precious"

    assert_ok(cli(src, "-o", out, "--overwrite"))
    with Image.open(out) as im:
        assert im.size == (4 * W, 4 * H)
    assert not leftovers(tmp_path)


# ---- determinism and tiling --------------------------------------------------------------------------


def test_same_seed_same_bytes_and_t0_ignores_seed(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png")

    def run(name: str, *opts: str) -> bytes:
        assert_ok(cli(src, "-o", tmp_path / name, *opts))
        return (tmp_path / name).read_bytes()

    a1 = run("a1.png", "--seed", "1", "-t", "1")
    a2 = run("a2.png", "--seed", "1", "-t", "1")
    b = run("b.png", "--seed", "2", "-t", "1")
    z1 = run("z1.png", "--seed", "1", "-t", "0")
    z2 = run("z2.png", "--seed", "2", "-t", "0")
    assert a1 == a2
    assert a1 != b and psnr(pixels(tmp_path / "a1.png"), pixels(tmp_path / "b.png")) < 40
    assert z1 == z2
    assert z1 != a1


@pytest.mark.parametrize("width,height,tiles", [(TW, TH, ("16", "24")), (72, 56, ("32", "48"))])
def test_tile_size_does_not_change_the_output(
    cli, tmp_path: Path, monkeypatch, tiny_model_dir: Path, width: int, height: int, tiles: tuple[str, str]
) -> None:
    """At T=1, tiles of any size give the untiled picture (the issue's --tile 32/48/0 case included)."""
    src = write_png(tmp_path / "p.png", width, height)
    calls = []
    # The architecture's public per-tile method of the texture stages: one call per tile in
    # one-pass and in two-pass tiling alike.
    real_render = LarSR.render_on_structure

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real_render(self, *args, **kwargs)

    monkeypatch.setattr(LarSR, "render_on_structure", counting)
    outputs, tiles_run = {}, {}
    for tile in ("0", *tiles):
        calls.clear()
        assert_ok(cli(src, "-o", tmp_path / f"t{tile}.png", "--tile", tile, "-t", "1", "--seed", "7"))
        outputs[tile], tiles_run[tile] = pixels(tmp_path / f"t{tile}.png"), len(calls)
    plan = Upscaler(tiny_model_dir, device="cpu").plan
    small, large = tiles
    assert tiles_run == {
        "0": 1,
        small: len(plan(height, width, int(small))),
        large: len(plan(height, width, int(large))),
    }
    assert tiles_run[small] >= 4 and tiles_run[large] >= 2
    assert psnr(outputs["0"], outputs[small]) >= 50
    assert psnr(outputs["0"], outputs[large]) >= 50


# ---- image modes ---------------------------------------------------------------------------------------


def _rgba(path: Path) -> None:
    px = np.dstack([rgb8(MW, MH), np.tile(np.linspace(0, 255, MW).astype(np.uint8), (MH, 1))])
    Image.fromarray(px, "RGBA").save(path)


def _palette_transparent(path: Path) -> None:
    im = Image.fromarray(rgb8(MW, MH)).quantize(8)
    im.info["transparency"] = 0
    im.save(path, transparency=0)


def _u16_gray(path: Path) -> None:
    vals = (np.arange(MW * MH, dtype=np.int64) * 65535 // (MW * MH - 1)).astype(np.uint16)
    Image.fromarray(vals.reshape(MH, MW)).save(path)


def _u16_rgb(path: Path) -> None:
    px = np.random.default_rng(3).integers(0, 65536, (MH, MW, 3), dtype=np.uint16)
    assert cv2.imwrite(str(path), px)


MODES = {
    # id: (file name, writer, expected (format, mode) of the output)
    "rgb-png": ("a.png", lambda p: Image.fromarray(rgb8(MW, MH)).save(p), ("PNG", "RGB")),
    "rgba-png": ("a.png", _rgba, ("PNG", "RGBA")),
    "l-png": ("a.png", lambda p: Image.fromarray(rgb8(MW, MH)[..., 0], "L").save(p), ("PNG", "L")),
    "la-png": ("a.png", lambda p: Image.fromarray(rgb8(MW, MH)[..., :2].copy(), "LA").save(p), ("PNG", "LA")),
    "p-png": ("a.png", lambda p: Image.fromarray(rgb8(MW, MH)).quantize(16).save(p), ("PNG", "RGB")),
    "p-transparent-png": ("a.png", _palette_transparent, ("PNG", "RGBA")),
    "cmyk-jpeg": ("a.jpg", lambda p: Image.fromarray(rgb8(MW, MH)).convert("CMYK").save(p), ("JPEG", "RGB")),
    "i16-png": ("a.png", _u16_gray, ("PNG", "I;16")),
    "rgb16-png": ("a.png", _u16_rgb, ("PNG", "RGB")),
    "rgb16-tiff": ("a.tif", _u16_rgb, ("TIFF", "RGB")),
    "rgb-jpeg": ("a.jpg", lambda p: Image.fromarray(rgb8(MW, MH)).save(p, quality=95), ("JPEG", "RGB")),
    "rgb-webp": ("a.webp", lambda p: Image.fromarray(rgb8(MW, MH)).save(p, lossless=True), ("WEBP", "RGB")),
    "rgb-tiff": ("a.tif", lambda p: Image.fromarray(rgb8(MW, MH)).save(p), ("TIFF", "RGB")),
    "rgb-bmp": ("a.bmp", lambda p: Image.fromarray(rgb8(MW, MH)).save(p), ("BMP", "RGB")),
}


@pytest.mark.parametrize("kind", list(MODES))
def test_image_modes_round_trip(cli, tmp_path: Path, kind: str) -> None:
    name, write, (fmt, mode) = MODES[kind]
    src = tmp_path / name
    write(src)
    out = tmp_path / "out" / name
    assert_ok(cli(src, "-o", tmp_path / "out", "-q"))
    with Image.open(out) as im:
        im.load()
        assert (im.format, im.mode, im.size) == (fmt, mode, (4 * MW, 4 * MH))
        arr = np.asarray(im)
    assert arr.std() > 0
    if kind == "i16-png":
        assert arr.dtype == np.uint16 and (arr % 257 != 0).mean() > 0.5  # processed in float, 16 bits out
    if kind.startswith("rgb16"):
        deep = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert deep.dtype == np.uint16 and deep.shape == (4 * MH, 4 * MW, 3)
        assert (deep % 257 != 0).mean() > 0.5
    if kind == "rgba-png":
        # Alpha is upscaled on its own (not by the model) and put back: a smooth x4 of the source's.
        with Image.open(src) as s:
            src_alpha = np.asarray(s)[..., 3].astype(np.float32) / 255
        expected = resize_float(src_alpha, (4 * MW, 4 * MH)) * 255
        assert np.abs(arr[..., 3].astype(np.float32) - expected).max() <= 1.0
    if kind == "p-transparent-png":
        assert (arr[..., 3] < 128).any() and (arr[..., 3] > 128).any()


def test_icc_and_exif_carried_and_stripped(cli, tmp_path: Path) -> None:
    icc = srgb_icc()
    src = tmp_path / "a.png"
    Image.fromarray(rgb8(MW, MH)).save(src, icc_profile=icc, exif=exif_bytes())
    assert_ok(cli(src, "-o", tmp_path / "keep.png", "-q"))
    assert_ok(cli(src, "-o", tmp_path / "strip.png", "-q", "--strip-metadata"))
    with Image.open(tmp_path / "keep.png") as keep:
        assert keep.info.get("icc_profile") == icc
        assert keep.getexif().get(0x010F) == "LarsrCam"
    with Image.open(tmp_path / "strip.png") as strip:
        assert not strip.info.get("icc_profile")
        assert 0x010F not in strip.getexif()


def test_exif_orientation_is_applied(cli, tmp_path: Path) -> None:
    stored = rgb8(MW, MH)
    oriented = tmp_path / "oriented.jpg"
    Image.fromarray(stored).save(oriented, quality=95, exif=exif_bytes(orientation=6), icc_profile=srgb_icc())
    assert_ok(cli(oriented, "-o", tmp_path / "o.jpg", "-q"))
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.size == (4 * MH, 4 * MW)  # rotated upright: 8x12 -> 32x48
        assert im.getexif().get(0x0112, 1) == 1  # and not rotated a second time by viewers
        assert im.getexif().get(0x010F) == "LarsrCam" and im.info.get("icc_profile") == srgb_icc()

    # Pixel-exact check on PNG: oriented file == the same pixels stored upright (T=0: deterministic).
    Image.fromarray(stored).save(tmp_path / "oriented.png", exif=exif_bytes(orientation=6))
    Image.fromarray(stored).transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")
    for name in ("oriented.png", "upright.png"):
        assert_ok(cli(tmp_path / name, "-o", tmp_path / "x4" / name, "-q", "-t", "0"))
    assert np.array_equal(pixels(tmp_path / "x4" / "oriented.png"), pixels(tmp_path / "x4" / "upright.png"))


# ---- bad input -------------------------------------------------------------------------------------------


def _truncated(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(rgb8(64, 64)).save(buf, format=Image.registered_extensions()[path.suffix])
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _bomb(path: Path) -> Path:
    """A valid PNG header claiming 20000x20000 pixels: Pillow refuses it before decoding anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(
        PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


BAD_INPUTS = {
    # id: (maker(tmp) -> path, words the one error line must contain)
    "missing": (lambda t: t / "missing.png", "no such file"),
    "not-an-image": (
        lambda t: (t / "t.png").write_text("hello, not an image") and t / "t.png",
        "not an image",
    ),
    "zero-size": (lambda t: (t / "z.png").write_bytes(b"") or t / "z.png", "empty"),
    "truncated-png": (lambda t: _truncated(t / "cut.png"), "truncated"),
    "truncated-jpeg": (lambda t: _truncated(t / "cut.jpg"), "truncated"),
    "decompression-bomb": (lambda t: _bomb(t / "bomb.png"), "decompression bomb"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_one_line_no_output(cli, tmp_path: Path, kind: str) -> None:
    make, words = BAD_INPUTS[kind]
    src = make(tmp_path)
    out = tmp_path / "out"
    result = cli(src, "-o", out / "x.png")
    line = assert_clean_failure(result, words, src.name)
    # Nothing else on stderr but the run's summary: a message spilling over lines shows up here.
    extra = [ln for ln in result.stderr.splitlines() if ln.strip() and ln != line and not SUMMARY.search(ln)]
    assert extra == [], result.stderr
    assert not out.exists() or not files_under(out)


def test_unreadable_input(cli, tmp_path: Path, monkeypatch) -> None:
    src = write_png(tmp_path / "secret.png", 8, 8)
    if os.geteuid() == 0:  # root reads anything: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m, **kw: False if Path(p) == src else real_access(p, m, **kw)
        )
    else:
        src.chmod(0)
    try:
        result = cli(src, "-o", tmp_path / "o.png")
    finally:
        src.chmod(0o644)
    assert_clean_failure(result, "secret.png", "cannot read")
    assert not (tmp_path / "o.png").exists()


def test_unwritable_output(cli, tmp_path: Path, monkeypatch) -> None:
    src = write_png(tmp_path / "p.png", 8, 8)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    assert_clean_failure(cli(src, "-o", tmp_path / "blocker" / "o.png"), "o.png", "cannot write")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)  # a read-only folder, as root sees it too
    (tmp_path / "ro").mkdir()
    assert_clean_failure(cli(src, "-o", tmp_path / "ro" / "o.png"), "o.png", "Permission denied")
    assert files_under(tmp_path / "ro") == []


@pytest.mark.parametrize("kind", ["no-folder", "no-manifest", "bad-graph"])
def test_missing_or_broken_model(cli, tmp_path: Path, tiny_model_dir: Path, kind: str) -> None:
    src = write_png(tmp_path / "p.png", 8, 8)
    model = tmp_path / "model"
    if kind == "no-manifest":
        model.mkdir()
    elif kind == "bad-graph":
        shutil.copytree(tiny_model_dir, model)
        (model / "decoder.onnx").write_bytes(b"garbage")
    result = cli(src, "-o", tmp_path / "o.png", "--model", str(model), model=False)
    words = {
        "no-folder": ("unknown model",),
        "no-manifest": ("not a larsr model folder", "manifest.json"),
        "bad-graph": ("decoder.onnx",),
    }[kind]
    assert_clean_failure(result, *words)
    assert not (tmp_path / "o.png").exists()


def test_unknown_model_name(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png", 8, 8)
    named = cli(src, "-o", tmp_path / "o.png", "--model", "no-such-model-name", model=False)
    assert_clean_failure(named, "unknown model", "no-such-model-name")
    assert not (tmp_path / "o.png").exists()


def test_batch_goes_on_past_bad_files(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "a.png", 12, 8)
    (src / "b.png").write_bytes(b"")
    (src / "c.jpg").write_text("junk")
    write_png(src / "d.png", 8, 8)
    result = cli(src, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert files_under(tmp_path / "out") == ["a.png", "d.png"]
    lines = error_lines(result.stderr)
    assert len(lines) == 2 and "b.png" in lines[0] and "c.jpg" in lines[1]
    assert SUMMARY.search(result.stderr).groups() == ("2", "0", "2")
    assert "Traceback" not in result.output and not leftovers(tmp_path / "out")


def test_errors_in_a_real_process_have_no_traceback_unless_debug(sub, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    plain = sub(bad, "-o", tmp_path / "o.png")
    assert plain.returncode == 1
    assert b"Traceback" not in plain.stderr
    assert b"larsr: error: " in plain.stderr and b"bad.png" in plain.stderr
    debug = sub(bad, "-o", tmp_path / "o.png", before=("--debug",))
    assert debug.returncode == 1 and b"Traceback" in debug.stderr
    assert not (tmp_path / "o.png").exists()


def test_image_too_large_for_an_explicit_whole_image_tile(cli, tmp_path: Path, monkeypatch) -> None:
    """--tile 0 on an image whose working memory exceeds the budget: one line pointing at --tile.

    The budget is made tiny by pretending each LR pixel needs 10 GB, so a 16x12 image stands in
    for a huge photo without costing any time or memory.
    """
    monkeypatch.setattr(Upscaler, "bytes_per_lr_pixel", lambda self: 10_000_000_000)
    src = write_png(tmp_path / "p.png")
    result = cli(src, "-o", tmp_path / "o.png", "--tile", "0")
    assert_clean_failure(result, "--tile")
    assert not (tmp_path / "o.png").exists()


# ---- interruption ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_ctrl_c_during_start_up_is_one_line(tmp_path: Path, tiny_model_dir: Path, delay: float) -> None:
    """Ctrl-C while numpy/onnxruntime are still importing: no traceback, exit 130."""
    src = write_png(tmp_path / "a.png")
    cmd = [
        *larsr_command(),
        "upscale",
        str(src),
        "-o",
        str(tmp_path / "b.png"),
        "--model",
        str(tiny_model_dir),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip(f"larsr finished within {delay} s")
    if b"Traceback" in err and b"larsr_cli" not in err:
        pytest.skip("SIGINT arrived during the interpreter's own start-up, before any larsr code ran")
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and len(err.decode().strip().splitlines()) == 1, err.decode()
    assert not (tmp_path / "b.png").exists() and not leftovers(tmp_path)


def test_reader_closing_stdout_early_is_a_failure(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``-o -`` into a reader that stops: the job fails with one line and exit 1, not "1 done".

    The reader closes its end before larsr writes, so the write meets EPIPE on any kernel (a
    reader that leaves after the OS buffered every byte cannot be detected by any writer).
    """
    src = write_png(tmp_path / "a.png", TW, TH)
    read_end, write_end = os.pipe()
    os.close(read_end)
    cmd = [*larsr_command(), "upscale", str(src), "-o", "-", "--model", str(tiny_model_dir)]
    proc = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False)
    os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "the reader closed the pipe" in err and "Traceback" not in err
    assert SUMMARY.search(err).groups() == ("0", "0", "1")


def test_keyboard_interrupt_while_writing_keeps_the_old_file(cli, tmp_path: Path, monkeypatch) -> None:
    src = write_png(tmp_path / "p.png", 12, 8)
    out = tmp_path / "o.png"
    out.write_bytes(b"precious")

    def interrupted_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    result = cli(src, "-o", out, "--overwrite")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    assert out.read_bytes() == b"precious" and not leftovers(tmp_path)


@pytest.mark.parametrize(
    "signum, code, word",
    [
        (signal.SIGINT, 130, b"interrupted"),
        (signal.SIGTERM, 143, b"terminated"),
        (signal.SIGHUP, 129, b"terminated"),
    ],
)
def test_signals_leave_no_partial_output(
    tmp_path: Path, tiny_model_dir: Path, signum: int, code: int, word: bytes
) -> None:
    """SIGINT, SIGTERM or SIGHUP to a real ``larsr`` in mid-folder: one line, exit 128+signal,
    finished images intact, no temporary file (SIGTERM used to kill it mid-write)."""
    count = 6
    for attempt in range(3):
        src, out = tmp_path / f"in{attempt}", tmp_path / f"out{attempt}"
        for i in range(count):
            write_png(src / f"{i:02d}.png", TW, TH, seed=i)
        cmd = [*larsr_command(), "upscale", str(src), "-o", str(out), "--model", str(tiny_model_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        # Wait until the first image is done: imports and model loading are over, work is under way.
        while proc.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and any(TMP_MARKER not in p.name for p in out.iterdir()):
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        done = files_under(out) if out.is_dir() else []
        if proc.returncode == 0 and len(done) == count:
            count *= 3  # finished before the signal: try again with more work
            continue
        assert proc.returncode == code, err.decode()
        assert word in err and b"Traceback" not in err and len(err.decode().strip().splitlines()) == 1
        assert not leftovers(out)
        assert 1 <= len(done) < count
        for name in done:  # what exists is complete
            with Image.open(out / name) as im:
                im.load()
                assert im.size == (4 * TW, 4 * TH)
        return
    pytest.fail("larsr finished every time before SIGINT arrived")


def test_texture_option_reaches_pixels_and_report(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(rgb8(24, 32)).save(src)
    outs = {}
    for s in ("0", "1"):
        out = tmp_path / f"out_{s}.png"
        result = cli(src, "-o", out, "--texture", s, "--json", "-t", "0.5")
        assert_ok(result)
        report = json.loads(result.stdout)
        assert report["texture"] == float(s) and report["results"][0]["texture"] == float(s)
        outs[s] = np.asarray(Image.open(out), dtype=np.int32)
    assert np.abs(outs["0"] - outs["1"]).max() > 2
    result = cli(src, "-o", tmp_path / "bad.png", "--texture", "2")
    assert result.exit_code == 2 and "--texture" in result.output
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (("-t", "nan"), "nan"),
        (("-t", "inf"), "--temperature"),
        (("-t", "256"), "--temperature"),  # Real-ESRGAN's -t is a tile size: refuse, do not paint noise
        (("--seed", str(2**64)), "--seed"),
        (("--samples", "100000000"), "--samples"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(cli, tmp_path: Path, args, needle) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(rgb8(24, 32)).save(src)
    result = cli(src, "-o", tmp_path / "out.png", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


def test_largest_seed_with_samples_past_it_is_one_line(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(rgb8(24, 32)).save(src)
    result = cli(src, "-o", tmp_path / "out", "--seed", str(2**63 - 1), "--samples", "2")
    assert_clean_failure(result, "--samples 2", "largest seed")


def test_markup_and_control_characters_in_names_stay_literal(sub, tmp_path: Path) -> None:
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    Image.fromarray(rgb8(24, 32)).save(src_dir / "x[b]c[link=x].png")
    (src_dir / "[b]bad\x1b[31mname\nsplit.png").write_bytes(b"not an image")
    proc = sub(src_dir, "-o", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert (tmp_path / "out" / "x[b]c[link=x].png").is_file()
    err = proc.stderr.decode()
    assert "MarkupError" not in err and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("larsr: error:")]
    assert "[b]bad" in line and "\\x1b" in line and "\\n" in line and "\x1b" not in err


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "larsr_cli", "--version"], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "larsr" in proc.stdout.decode()


# ---- output naming: refuse what a careful user would not expect ------------------------------------


def _two_inputs(tmp_path: Path) -> tuple[Path, Path]:
    return write_png(tmp_path / "a.png", 12, 8), write_png(tmp_path / "b.png", 12, 8)


def test_one_file_name_for_several_outputs_is_refused(cli, tmp_path: Path) -> None:
    a, b = _two_inputs(tmp_path)
    assert_clean_failure(cli(a, b, "-o", tmp_path / "out.png"), "names one file", "2 outputs")
    assert_clean_failure(cli(a, "-o", tmp_path / "out.png", "--samples", "2"), "names one file")
    assert_clean_failure(cli(str(tmp_path / "*.png"), "-o", tmp_path / "out.png"), "names one file")
    assert not (tmp_path / "out.png").exists()


def test_unknown_output_suffix_and_empty_output_are_refused(cli, tmp_path: Path) -> None:
    a, _ = _two_inputs(tmp_path)
    assert_clean_failure(cli(a, "-o", tmp_path / "out.xyz"), ".xyz is not an image suffix")
    assert not (tmp_path / "out.xyz").exists()
    assert_clean_failure(cli(a, "-o", ""), "-o is empty")
    # an explicit folder with a dot in its name is fine when it ends with /
    assert_ok(cli(a, "-o", f"{tmp_path / 'out.v2'}/"))
    assert (tmp_path / "out.v2" / "a.png").is_file()


def test_suffix_cannot_leave_the_output_folder(cli, tmp_path: Path) -> None:
    a, _ = _two_inputs(tmp_path)
    assert_clean_failure(cli(a, "-o", tmp_path / "out", "--suffix", "/../x"), "--suffix")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "out").exists()


def test_the_input_is_never_replaced_even_with_overwrite(cli, tmp_path: Path) -> None:
    a, _ = _two_inputs(tmp_path)
    before = a.read_bytes()
    assert_clean_failure(cli(a, "-o", a, "--overwrite"), "input itself")
    assert_clean_failure(cli(tmp_path, "-o", tmp_path, "--overwrite"), "also an input")
    assert a.read_bytes() == before


def test_rerun_in_place_with_suffix_skips_earlier_outputs(cli, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "a.png", 12, 8)
    assert_ok(cli(folder, "-o", folder, "--suffix", "_x4"))
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png"]
    result = cli(folder, "-o", folder, "--suffix", "_x4", "--skip-existing")
    assert_ok(result)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png"]  # no a_x4_x4.png


def test_low_quality_jpeg_gets_one_warning(sub, tmp_path: Path) -> None:
    for q in (40, 95):
        Image.fromarray(rgb8(24, 32)).save(tmp_path / f"q{q}.jpg", quality=q)
        proc = sub(tmp_path / f"q{q}.jpg", "-o", tmp_path / f"out{q}.png")
        assert proc.returncode == 0, proc.stderr
        warnings = [ln for ln in proc.stderr.decode().splitlines() if "low-quality JPEG" in ln]
        assert len(warnings) == (1 if q == 40 else 0), proc.stderr
        if q == 40:
            assert "q40" in warnings[0] and warnings[0].startswith("larsr: warning:")


def test_threads_are_bounded(cli, tmp_path: Path) -> None:
    src = write_png(tmp_path / "p.png", 12, 8)
    result = cli(src, "-o", tmp_path / "o.png", "--threads", "100000")
    assert result.exit_code == 2 and "--threads" in result.output
    assert not (tmp_path / "o.png").exists()


def test_stdin_over_the_cap_is_one_line(cli, tmp_path: Path, monkeypatch) -> None:
    import larsr_cli.engine as engine

    data = io.BytesIO()
    Image.fromarray(rgb8(64, 64)).save(data, format="PNG")
    monkeypatch.setattr(engine, "MAX_STDIN_BYTES", len(data.getvalue()) - 1)  # 1 GiB in real use
    assert_clean_failure(cli("-", "-o", tmp_path / "o.png", input=data.getvalue()), "<stdin>", "MiB")
    assert not (tmp_path / "o.png").exists()
    monkeypatch.setattr(engine, "MAX_STDIN_BYTES", len(data.getvalue()))
    assert_ok(cli("-", "-o", tmp_path / "o.png", input=data.getvalue()))


# ---- help -------------------------------------------------------------------------------------------


def test_upscale_help_groups_options_and_shows_real_defaults() -> None:
    from larsr_cli.help import EXAMPLES, SECTIONS
    from larsr_cli.manifest import read_manifest
    from larsr_cli.registry import embedded_models

    result = CliRunner().invoke(main, ["upscale", "--help"])
    assert result.exit_code == 0
    text = result.output
    for title in (*SECTIONS, "Examples"):
        assert f"\n{title}:\n" in text
    shipped = read_manifest(embedded_models()["larsr-x4"])
    defaults = f"larsr-x4: -t {shipped.default_temperature:g}, --texture {shipped.default_texture:g}"
    assert defaults in " ".join(text.split())  # help wraps lines
    # Every option has a section (only --help is left for "Other") and every example is real.
    options = {p.name for p in main.commands["upscale"].params if isinstance(p, click.Option)}
    assert options - {n for names in SECTIONS.values() for n in names} == set()
    flags = {f for p in main.commands["upscale"].params for f in getattr(p, "opts", [])}
    used = set(re.findall(r"\s(--?[a-z][a-z-]*)", EXAMPLES))
    assert used and used <= flags, used - flags


# ---- metadata a format cannot hold -----------------------------------------------------------------


def test_exif_too_big_for_jpeg_is_dropped_with_a_warning(cli, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "LarsrCam"
    exif[0x010E] = "x" * 70_000  # ImageDescription: more than one JPEG APP1 segment holds
    src = tmp_path / "big-exif.png"
    Image.fromarray(rgb8()).save(src, exif=exif.tobytes())
    result = cli(src, "-o", tmp_path / "out.jpg")
    assert result.exit_code == 0, result.output
    assert "EXIF dropped" in result.output and "internal error" not in result.output
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (4 * W, 4 * H) and not im.getexif()


@pytest.mark.parametrize("suffix, dpi, limit", [(".jpg", 60_000, 65535), (".png", 5e7, (2**32 - 1) * 0.0254)])
def test_dpi_beyond_the_format_is_clamped_not_wrapped(
    cli, tmp_path: Path, suffix: str, dpi: float, limit: float
) -> None:
    """x4 keeps the print size, so dpi grows x4; past the format's field it is clamped."""
    src = tmp_path / f"scan{suffix}"
    Image.fromarray(rgb8()).save(src, dpi=(dpi, dpi), **({"quality": 95} if suffix == ".jpg" else {}))
    result = cli(src, "-o", tmp_path / f"out{suffix}")
    assert result.exit_code == 0, result.output
    assert "clamped" in result.output
    with Image.open(tmp_path / f"out{suffix}") as im:
        got = im.info["dpi"][0]
    assert limit * 0.999 <= got <= limit * 1.001  # the most it can hold, not a wrapped small number


def test_corrupt_exif_is_one_warning_line_not_a_python_warning(sub, tmp_path: Path) -> None:
    src = tmp_path / "bad-exif.jpg"
    Image.fromarray(rgb8()).save(
        src, quality=95, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 10
    )
    proc = sub(src, "-o", tmp_path / "out.png")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "larsr: warning: " in err and "Corrupt EXIF" in err
    assert "warnings.warn" not in err and ".py:" not in err  # no library source lines


@pytest.mark.parametrize("kind", ["gif", "tiff"])
def test_animated_or_multi_page_input_is_refused_in_one_line(cli, tmp_path: Path, kind: str) -> None:
    """Frame 1 alone would silently lose the others: refuse, and leave nothing behind."""
    frames = [Image.fromarray(rgb8(seed=i)) for i in range(3)]
    src = tmp_path / f"anim.{kind}"
    frames[0].save(
        src, save_all=True, append_images=frames[1:], **({"duration": 80} if kind == "gif" else {})
    )
    result = cli(src, "-o", tmp_path / "out.png")
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert "3 frames" in line and ("animated" in line or "multi-page" in line)
    assert not (tmp_path / "out.png").exists() and not leftovers(tmp_path)
