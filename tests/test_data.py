"""Training data: container extraction, the fixed split, and (lr, hr) pairs that match degrade.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from photos import synthetic_photo
from PIL import Image

from export import data
from export.degrade import bicubic_downscale


def _jpeg_bytes(width: int, height: int, seed: int, exif_thumb: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if exif_thumb:
        # Nested SOI markers inside the big JPEG: a JPEG thumbnail in the EXIF block.
        thumb = io.BytesIO()
        Image.fromarray(arr[:16, :16]).save(thumb, format="JPEG")
        exif = Image.Exif()
        exif[0x010E] = "x" * 8
        raw = exif.tobytes() + thumb.getvalue()
        img.save(buf, format="JPEG", quality=90, exif=raw)
    else:
        img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _fake_eet(parts: list[bytes], seed: int = 0) -> bytes:
    """Random bytes with JPEG streams in between, and a decoy marker that is no JPEG."""
    rng = np.random.default_rng(seed)
    out = [b"\x1e\xe7\xff\x1e" + rng.bytes(300), b"\xff\xd8\xff\xe0garbage" + rng.bytes(50)]
    for part in parts:
        out.append(part)
        out.append(rng.bytes(int(rng.integers(10, 500))))
    return b"".join(out)


def test_largest_embedded_jpeg_picks_the_biggest():
    small, big = _jpeg_bytes(40, 30, seed=1), _jpeg_bytes(96, 64, seed=2, exif_thumb=True)
    for order in ([small, big], [big, small]):
        img = data.largest_embedded_jpeg(_fake_eet(order))
        assert img.size == (96, 64)
    expected = np.asarray(Image.open(io.BytesIO(big)).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), expected)


def test_largest_embedded_jpeg_skips_truncated_streams():
    small, big = _jpeg_bytes(40, 30, seed=1), _jpeg_bytes(96, 64, seed=2)
    blob = _fake_eet([small]) + big[: len(big) // 3]  # the big one is cut off mid-scan
    assert data.largest_embedded_jpeg(blob).size == (40, 30)


def test_largest_embedded_jpeg_none_found():
    with pytest.raises(ValueError, match="no decodable JPEG"):
        data.largest_embedded_jpeg(np.random.default_rng(0).bytes(5000))


def test_decode_source_applies_exif_orientation(tmp_path: Path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    img = data.decode_source(path)
    assert img.size == (20, 40) and img.mode == "RGB"


def test_val_split_is_fixed_and_disjoint():
    assert len(data.VAL_PHOTOS) >= 10
    assert len({name.split("__")[0] for name in data.VAL_PHOTOS}) >= 6
    assert not any(name.startswith("kphotoalbum__") for name in data.VAL_PHOTOS)
    for name in data.VAL_PHOTOS:
        assert data.split_of(name) == "val"
        assert data.split_of(name + ".png") == "val"
    assert data.split_of("mate-backgrounds__Aqua") == "train"
    # The exact list is part of the contract: changing it silently breaks score comparability.
    assert "palapeli-data__european-honey-bee" in data.VAL_PHOTOS
    assert "lxqt-themes__Valendas" in data.VAL_PHOTOS


def test_val_names_exist_in_the_photo_list():
    tsv = data.default_tsv()
    if not tsv.is_file():
        pytest.skip(f"photo list not found at {tsv}")
    names = [s.name for tsv in data.default_tsvs() for s in data.read_sources(tsv)]
    assert len(names) == len(set(names)), "output names must be unique across both lists"
    assert data.VAL_PHOTOS <= set(names)
    splits = {n: data.split_of(n) for n in names}
    train = [n for n, split in splits.items() if split == "train"]
    assert set(train).isdisjoint(data.VAL_PHOTOS)
    assert len(train) + sum(split != "train" for split in splits.values()) == len(names)
    assert len(train) >= 300, "the texture issue asks for at least 300 training photos"


def test_training_never_reads_held_out_or_reserved_packages():
    """The detail-rich set's packages and the reserved evaluation sources stay out of training."""
    sources = [s for tsv in data.default_tsvs() if tsv.is_file() for s in data.read_sources(tsv)]
    for src in sources:
        reserved = src.package.endswith(("-doc", "-testdata", "-tests"))
        assert not reserved, f"{src.package} is reserved for independent evaluation"
        if src.package in data.DETAIL_PACKAGES:
            assert data.split_of(src.name) != "train", src.name
    assert data.split_of("kphotoalbum__jesper") == "detail"
    assert data.split_of("supertuxkart-data__logs") == "train"


def test_output_names_disambiguate_resolution_named_files(tmp_path: Path):
    tsv = tmp_path / "list.tsv"
    rows = [
        "debian_package\tversion_seen\tpath_inside_package\tnote",
        "pkg\t1\tusr/share/wallpapers/Kite/contents/images/800x600.jpg\t",
        "pkg\t1\tusr/share/wallpapers/Path/contents/images/800x600.jpg\t",
        "pkg\t1\tusr/share/a/same.png\t",
        "pkg\t1\tusr/share/b/same.png\t",
        "other\t1\tusr/share/x/photo.jpg\tnote here",
    ]
    tsv.write_text("\n".join(rows) + "\n")
    sources = data.read_sources(tsv)
    names = [s.name for s in sources]
    assert names == ["pkg__Kite", "pkg__Path", "pkg__a-same", "pkg__b-same", "other__photo"]
    assert [s.jpeg_source for s in sources] == [True, True, False, False, True]
    assert sources[-1].note == "note here"


def test_read_licence_dep5_last_match_wins(tmp_path: Path):
    copyright_file = tmp_path / "copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: wallpapers/*.jpg\nCopyright: a photographer\nLicense: CC-BY-SA-3.0\n"
    )
    assert data.read_licence(copyright_file, "usr/share/pkg/wallpapers/a.jpg") == "CC-BY-SA-3.0"
    assert data.read_licence(copyright_file, "usr/share/pkg/icons/a.png") == "GPL-2+"
    assert data.read_licence(tmp_path / "missing", "x").startswith("unknown")


def test_load_photo_halves_jpeg_sources(photos_dir: Path):
    full = data.load_photo(photos_dir / "lxqt-themes__beam.png", jpeg_source=False)
    half = data.load_photo(photos_dir / "mate-backgrounds__Aqua.png", jpeg_source=True)
    assert full.shape == (160, 150, 3) and full.dtype == np.float32
    assert half.shape == (100, 120, 3) and half.dtype == np.float32
    assert 0.0 <= half.min() and half.max() <= 1.0


def test_crop_dataset_pairs_are_consistent(photos_dir: Path):
    torch = pytest.importorskip("torch")
    ds = data.CropDataset(photos_dir, "train", hr_size=64, scale=4, length=12, seed=3)
    # kphotoalbum is dropped by default, and the val photo never leaks into train.
    assert sorted(ds.names) == ["lxqt-themes__beam", "mate-backgrounds__Aqua"]
    seen_shapes = set()
    for i in range(len(ds)):
        lr, hr = ds[i]
        assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float32
        assert tuple(hr.shape) == (3, 64, 64) and tuple(lr.shape) == (3, 16, 16)
        hr_np = hr.permute(1, 2, 0).numpy()
        lr_np = lr.permute(1, 2, 0).numpy()
        np.testing.assert_allclose(lr_np * 255.0, np.rint(lr_np * 255.0), atol=1e-3)  # 8-bit grid
        expected = bicubic_downscale(hr_np, 4)
        assert np.abs(lr_np - np.clip(expected, 0, 1)).max() <= 0.5 / 255 + 1e-6
        seen_shapes.add(hr_np.tobytes()[:64])
    assert len(seen_shapes) > 1, "crops should vary"
    a, b = ds[5], ds[5]
    assert torch.equal(a[1], b[1]), "an index must always give the same crop within an epoch"
    ds.set_epoch(1)
    assert not torch.equal(a[1], ds[5][1])


def test_crop_dataset_options(photos_dir: Path):
    pytest.importorskip("torch")
    # kphotoalbum is a source of the detail-rich validation set: never trained on, even when asked
    with_low = data.CropDataset(photos_dir, "train", hr_size=64, length=4, include_low_quality=True)
    assert "kphotoalbum__pool" not in with_low.names
    detail = data.CropDataset(photos_dir, "detail", hr_size=64, length=4, include_low_quality=True)
    assert detail.names == ["kphotoalbum__pool"]
    with pytest.raises(ValueError, match="multiple of 4"):
        data.CropDataset(photos_dir, "train", hr_size=66)
    with pytest.raises(ValueError, match="at least"):
        data.CropDataset(photos_dir, "train", hr_size=512)


def test_val_images_crop_to_multiple_of_four(photos_dir: Path):
    vals = data.val_images(photos_dir, max_side=101)
    assert [name for name, _ in vals] == ["palapeli-data__european-honey-bee"]
    hr = vals[0][1]
    assert hr.shape == (100, 100, 3) and hr.dtype == np.float32
    full = data.val_images(photos_dir, max_side=None)[0][1]
    assert full.shape == (148, 128, 3)  # 300x260 halved to 150x130, then cut to multiples of 4


def test_list_command_counts(photos_dir: Path, capsys: pytest.CaptureFixture[str]):
    root = photos_dir.parent  # the fixture's folder is ROOT/photos, as `fetch ROOT` makes it
    assert data.main(["list", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 2 photos\n" in out and "val: 1 photos" in out
    assert "detail: 0 photos (1 low-quality left out)" in out


def test_fetch_reports_missing_package_and_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Failures are collected per package/photo, and what worked is still written."""
    tsv = tmp_path / "list.tsv"
    tsv.write_text(
        "debian_package\tversion_seen\tpath_inside_package\tnote\n"
        "good\t1\tusr/share/good/a.png\t\n"
        "good\t1\tusr/share/good/missing.png\t\n"
        "gone\t1\tusr/share/gone/b.png\t\n"
    )

    def fake_fetch_package(package: str, sources: list, root: Path) -> str:
        if package == "gone":
            raise data.FetchError("gone: apt-get download failed: E: Unable to locate package gone")
        unpacked = root / "unpacked" / package / "usr/share/good"
        unpacked.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_photo(12, 10, 0)).save(unpacked / "a.png")
        return "1.0"

    monkeypatch.setattr(data, "_fetch_package", fake_fetch_package)
    entries, errors = data.fetch(tmp_path / "out", tsv)
    assert [e["name"] for e in entries] == ["good__a"]
    assert entries[0]["width"] == 10 and entries[0]["height"] == 12 and entries[0]["version"] == "1.0"
    assert len(errors) == 2
    assert any("missing.png" in e for e in errors) and any(e.startswith("gone:") for e in errors)
    manifest = json.loads((tmp_path / "out" / "photos" / data.MANIFEST_NAME).read_text())
    assert [p["file"] for p in manifest["photos"]] == ["good__a.png"]
