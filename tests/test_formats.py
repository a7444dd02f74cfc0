"""The one format table drives everything that names a format: the CLI, the job planner, errors.

These tests pin that nothing keeps a list of its own, and that the table still describes what
larsr has always written (so moving the sets into records changed no behaviour).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

from larsr_cli.cli import main
from larsr_cli.errors import ImageError, LarsrError
from larsr_cli.images import formats
from larsr_cli.images.formats import (
    FORMATS,
    IMAGE_SUFFIXES,
    READABLE_FORMATS,
    ImageFormat,
    find_format,
    format_choices,
    output_suffix,
    resolve_format,
    suffix_list,
    writable_formats,
)
from larsr_cli.jobs import NamingOptions, plan_jobs


def _option(name: str) -> click.Parameter:
    return next(p for p in main.commands["upscale"].params if p.name == name)


def test_cli_format_choices_are_the_tables() -> None:
    choice = _option("fmt").type
    assert isinstance(choice, click.Choice)
    assert list(choice.choices) == format_choices()
    assert format_choices() == ["same", "png", "jpg", "jpeg", "webp", "tiff", "bmp"]  # unchanged CLI


def test_cli_quality_help_names_the_lossy_formats() -> None:
    text = _option("quality").help or ""
    assert "jpg (default 95)" in text and "webp (default 95)" in text


def test_a_new_record_is_offered_resolved_and_named_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ImageFormat("avif", "AVIF", (".avif",), alpha=True, icc=True, exif=True, quality=80)
    monkeypatch.setattr(formats, "FORMATS", (*FORMATS, extra))
    assert format_choices()[-1] == "avif" and extra in formats.lossy_formats()
    assert find_format(".AVIF") is extra and resolve_format(None, "x.avif") == "AVIF"
    assert output_suffix(".avif") == ".avif"
    assert suffix_list(dotted=False).endswith("bmp or avif") and ".avif" in suffix_list(dotted=True)


def test_capabilities_are_what_larsr_always_wrote() -> None:
    by_name = {f.pillow: f for f in writable_formats()}
    assert list(by_name) == ["PNG", "JPEG", "WEBP", "TIFF", "BMP"]

    def having(field: str) -> set[str]:
        return {name for name, f in by_name.items() if getattr(f, field)}

    assert having("alpha") == {"PNG", "WEBP", "TIFF"}
    assert having("deep") == {"PNG", "TIFF"}
    assert having("float_samples") == {"TIFF"}
    assert having("dpi") == {"PNG", "JPEG", "TIFF", "BMP"}
    assert having("icc") == having("exif") == {"PNG", "JPEG", "WEBP", "TIFF"}
    assert {name for name, f in by_name.items() if not f.grayscale} == {"WEBP"}
    assert {name: f.quality for name, f in by_name.items() if f.quality} == {"JPEG": 95, "WEBP": 95}
    assert {f.suffix for f in by_name.values()} == {".png", ".jpg", ".webp", ".tif", ".bmp"}


def test_every_suffix_and_spelling_finds_its_record() -> None:
    assert READABLE_FORMATS == ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
    for fmt in FORMATS:
        for suffix in fmt.suffixes:
            assert suffix in IMAGE_SUFFIXES and find_format(suffix.upper(), writable=False) is fmt
        for suffix in fmt.input_suffixes:
            assert suffix in IMAGE_SUFFIXES and find_format(suffix) is None  # read, never written
        assert find_format(fmt.pillow, writable=False) is fmt
    for spelling in ["png", "jpg", "jpeg", "jpe", "webp", "tif", "tiff", "bmp", "JPEG"]:
        assert find_format(spelling) is not None, spelling
    assert find_format("gif") is None and find_format("gif", writable=False) is not None


def test_same_format_keeps_only_writable_source_suffixes() -> None:
    assert output_suffix(".JPEG") == ".jpeg" and output_suffix(".tif") == ".tif"
    assert (
        output_suffix(".jfif") == ".png" and output_suffix(".gif") == ".png" and output_suffix("") == ".png"
    )


def test_error_texts_list_every_writable_format(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        resolve_format("gif")
    assert "use png, jpg, webp, tiff or bmp" in str(exc.value)
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src)
    opts = NamingOptions(
        output=str(tmp_path / "out.xyz"), format="same", suffix="", seed=0, samples=1, recursive=False
    )
    with pytest.raises(LarsrError) as exc2:
        plan_jobs((str(src),), opts)
    assert "use .png, .jpg, .webp, .tif or .bmp" in str(exc2.value)


def test_planner_names_outputs_from_the_table(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ["a.png", "b.jpe", "c.jfif", "d.gif", "e.txt"]:
        (src / name).write_bytes(b"x")
    opts = NamingOptions(
        output=str(tmp_path / "out"), format="same", suffix="", seed=0, samples=1, recursive=False
    )
    targets = sorted(Path(j.target).name for j in plan_jobs((str(src),), opts))
    assert targets == ["a.png", "b.jpe", "c.png", "d.png"]
    opts = NamingOptions(
        output=str(tmp_path / "out"), format="tiff", suffix="", seed=0, samples=1, recursive=False
    )
    assert {Path(j.target).suffix for j in plan_jobs((str(src),), opts)} == {".tif"}
