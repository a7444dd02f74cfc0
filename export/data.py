"""Training and validation photos, taken from Debian packages, and the crop dataset built on them.

Why Debian packages: they are the only source of real photographs this project can reach, they are
versioned, and every package carries its licence, so the provenance of the training data can be
written into each model's manifest. The list of photos lives in
`shared/data/training-photos.tsv`; `python -m export.data fetch DIR` turns it into lossless PNGs plus
`DIR/photos/manifest.json`, and nothing else in the project touches the network for data.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import io
import json
import os
import posixpath
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from export.degrade import bicubic_downscale, quantize_8bit
from larsr_cli.atomic import atomic_write
from larsr_cli.integrity import sha256_of

if TYPE_CHECKING:
    import torch

MANIFEST_NAME = "manifest.json"
JPEG_SUFFIXES = (".jpg", ".jpeg", ".edj")
LOW_QUALITY_PACKAGES = frozenset({"kphotoalbum"})

# The held-out set. Fixed once, by name, so that scores stay comparable across runs and models;
# never derive it from a hash or the file order. Chosen for varied content (insects, architecture,
# food, water, foliage, textures, people-made objects) across packages, with two lossless PNGs.
VAL_PHOTOS = frozenset(
    {
        "palapeli-data__european-honey-bee",
        "palapeli-data__cincinnati-bridge",
        "plasma-workspace-wallpapers__ColorfulCups",
        "plasma-workspace-wallpapers__EveningGlow",
        "lomiri-wallpapers-16.04__Dragonfly_by_Bolly",
        "lomiri-wallpapers-16.04__aitzgorri_by_Aitzol_Berasategi",
        "mate-backgrounds__LadyBird",
        "mate-backgrounds__Wood",
        "tuxpaint-data__lighthouse",
        "tuxpaint-data__sheep",
        "lxqt-themes__Valendas",
        "lxqt-themes__flowers",
        "enlightenment-data__Red-Maple",
    }
)

_SOI = b"\xff\xd8\xff"


# --------------------------------------------------------------------------------------------
# The photo list


@dataclasses.dataclass(frozen=True)
class PhotoSource:
    """One row of training-photos.tsv plus the output name derived from it."""

    package: str
    version_seen: str
    path: str
    note: str
    name: str  # output stem: "<package>__<stem>", unique across the list

    @property
    def jpeg_source(self) -> bool:
        """JPEG-coded sources get downscaled before use to shed compression artefacts."""
        return self.path.lower().endswith(JPEG_SUFFIXES)


EXTRA_TSV = Path(__file__).with_name("extra-photos.tsv")

# Whole packages kept out of training: the detail-rich validation set (faces, fur, text, buildings,
# foliage, fabric) is cut from them, so its sources are disjoint from every training photo.
DETAIL_PACKAGES = frozenset({"kphotoalbum", "palapeli-data", "tuxpaint-data", "digikam-data"})


def default_tsvs() -> list[Path]:
    """The shared photo list plus the project's own list of further photos and photographic textures."""
    return [default_tsv(), EXTRA_TSV]


def default_tsv() -> Path:
    """Find shared/data/training-photos.tsv inside or beside the checkout (CI lays it beside)."""
    root = Path(__file__).resolve().parents[1]
    for base in (root, root.parent):
        candidate = base / "shared" / "data" / "training-photos.tsv"
        if candidate.is_file():
            return candidate
    return root.parent / "shared" / "data" / "training-photos.tsv"


_RESOLUTION_STEM = re.compile(r"^\d+x\d+$")
_LAYOUT_DIRS = frozenset({"contents", "images"})


def _stem_of(path: str) -> str:
    """A readable stem: KDE wallpapers are named by resolution, so use their folder name instead."""
    parts = Path(path).parts
    stem = Path(path).stem
    if not _RESOLUTION_STEM.match(stem):
        return stem
    folders = [p for p in parts[:-1] if p not in _LAYOUT_DIRS]
    return folders[-1] if folders else stem


def _unique_stems(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Output stems per (package, path), made unique within a package by the first differing folder."""
    stems = [_stem_of(path) for _, path in rows]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (package, _) in enumerate(rows):
        groups.setdefault((package, stems[i]), []).append(i)
    for (_, stem), members in groups.items():
        if len(members) < 2:
            continue
        parts = [Path(rows[i][1]).parts for i in members]
        depth = next(d for d in range(min(map(len, parts))) if len({p[d] for p in parts}) > 1)
        for i, p in zip(members, parts, strict=True):
            stems[i] = f"{p[depth]}-{stem}"
    return stems


def read_sources(tsv: Path) -> list[PhotoSource]:
    """Parse the photo list; names are fixed by the list alone, never by what was downloaded."""
    with open(tsv, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r.get("debian_package")]
    keys = [(r["debian_package"].strip(), r["path_inside_package"].strip()) for r in rows]
    stems = _unique_stems(keys)
    return [
        PhotoSource(
            package=pkg,
            version_seen=(r.get("version_seen") or "").strip(),
            path=path,
            note=(r.get("note") or "").strip(),
            name=f"{pkg}__{stem}",
        )
        for r, (pkg, path), stem in zip(rows, keys, stems, strict=True)
    ]


def split_of(name: str) -> str:
    """ "val" for the fixed held-out photos, "detail" for the rest of the held-out packages (the
    detail-rich set's sources), "train" for everything else (accepts stem or file name)."""
    stem = name[: -len(".png")] if name.endswith(".png") else name
    if stem in VAL_PHOTOS:
        return "val"
    return "detail" if stem.split("__")[0] in DETAIL_PACKAGES else "train"


# --------------------------------------------------------------------------------------------
# Decoding the sources


def _jpeg_candidates(data: bytes) -> Iterable[tuple[int, Image.Image]]:
    """Every SOI offset whose bytes open as a JPEG header, with the (lazily decoded) image."""
    start = data.find(_SOI)
    while start != -1:
        try:
            img = Image.open(io.BytesIO(data[start:]))
            if img.format == "JPEG":
                yield start, img
        except Exception:  # random bytes that only look like a marker
            pass
        start = data.find(_SOI, start + 1)


def largest_embedded_jpeg(data: bytes) -> Image.Image:
    """The largest JPEG that fully decodes from a byte blob such as an Eet (.edj) container.

    Eet stores lossy images as plain JPEG streams between its own records, and a JPEG may itself hold
    a smaller one (an EXIF thumbnail). Rather than parse either format, try every SOI offset and let
    Pillow find where each stream ends; headers are cheap, so decode fully only in order of size.
    """
    candidates = sorted(_jpeg_candidates(data), key=lambda c: c[1].width * c[1].height, reverse=True)
    for _, img in candidates:
        try:
            img.load()
            return img
        except Exception:  # truncated or corrupt stream; try the next one
            continue
    raise ValueError("no decodable JPEG found in the container")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Upright RGB: camera orientation applied, palette/grey/CMYK/16-bit brought to 8-bit RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Wallpapers are opaque in practice; flatten on white so a stray alpha cannot leave garbage.
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return img.convert("RGB")


def decode_source(file: Path) -> Image.Image:
    """Open a listed file as upright RGB; .edj containers yield their largest JPEG."""
    if file.suffix.lower() == ".edj":
        return _to_rgb(largest_embedded_jpeg(file.read_bytes()))
    with Image.open(file) as img:
        img.load()
        return _to_rgb(img)


# --------------------------------------------------------------------------------------------
# Fetching packages


class FetchError(Exception):
    """A package or photo that could not be obtained; the message is one line naming it."""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def download_deb(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded with apt-get only if no copy is there yet."""
    debs.mkdir(parents=True, exist_ok=True)
    existing = sorted(debs.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    proc = _run(["apt-get", "download", package], cwd=debs)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        raise FetchError(f"{package}: apt-get download failed: {_last_line(proc.stderr or proc.stdout)}")
    return found[-1]


def deb_version(deb: Path) -> str:
    """The exact version inside the .deb, which may be newer than the one the list was made from."""
    proc = _run(["dpkg-deb", "-f", str(deb), "Version"])
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def _member_path(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


def _stream_members(deb: Path, targets: set[str], dest: Path) -> dict[str, str]:
    """One pass over the data tarball: write wanted regular files, return wanted symlinks.

    Returns {path: resolved target path} for wanted members that are symlinks inside the package.
    """
    links: dict[str, str] = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                rel = _member_path(member.name)
                if rel not in targets:
                    continue
                if member.issym():
                    base = posixpath.dirname(rel)
                    links[rel] = posixpath.normpath(posixpath.join(base, member.linkname)).lstrip("/")
                elif member.isfile():
                    out = dest / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    out.write_bytes(src.read())
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise FetchError(f"{deb.name}: dpkg-deb could not read the package")
    return links


def unpack_deb(deb: Path, dest: Path, wanted: Iterable[str]) -> None:
    """Extract only the wanted paths, in the same layout `dpkg -x` would give.

    Some of these packages are hundreds of MB of files we never read; streaming the data tarball
    and writing just the listed members keeps the fetch fast and the disk small. Wanted symlinks
    (KDE wallpapers link every resolution to one file) are recreated, and their targets fetched in
    a further pass, a few times at most to follow chains.
    """
    targets = set(wanted)
    for _ in range(4):
        links = _stream_members(deb, targets, dest)
        for rel, target in links.items():
            link = dest / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(dest / target, link.parent))
        pending = {t for t in links.values() if not (dest / t).exists()}
        if not pending:
            return
        targets = pending


def _dep5_paragraphs(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, licence name) for each DEP-5 paragraph that has both."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:[ \t]*(.*(?:\n[ \t]+.*)*)", para, flags=re.MULTILINE)
        licence = re.search(r"^License:[ \t]*(\S.*)$", para, flags=re.MULTILINE)
        if files and licence:
            out.append((files.group(1).split(), licence.group(1).strip()))
    return out


def _pattern_matches(pattern: str, path: str) -> bool:
    """DEP-5 patterns name source-tree paths; installed paths end with them (or `*` covers all)."""
    return pattern == "*" or fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern)


def read_licence(copyright_file: Path, path: str = "") -> str:
    """The licence that covers `path` per the package's copyright file.

    DEP-5 files: the last paragraph whose Files pattern matches the path (the format's own rule),
    which tells e.g. lxqt's CC-BY-SA wallpapers from its LGPL code. Older free-form files: the first
    line that speaks of a licence, marked as such, to be read by a person.
    """
    if not copyright_file.is_file():
        return "unknown (no copyright file in the package)"
    text = copyright_file.read_text(encoding="utf-8", errors="replace")
    paragraphs = _dep5_paragraphs(text)
    if paragraphs:
        matching = [lic for pats, lic in paragraphs if any(_pattern_matches(p, path) for p in pats)]
        return matching[-1] if matching else paragraphs[0][1]
    lines = [" ".join(ln.split()) for ln in text.splitlines()]
    for pattern in (r"\b(L?GPL|BSD|MIT|Apache|Creative Commons|CC-BY)", r"licen[cs]e"):
        for line in lines:
            if re.search(pattern, line, flags=re.IGNORECASE):
                return "free-form copyright file: " + line[:160]
    return "free-form copyright file: " + " ".join(text.split())[:160]


def _write_png(img: Image.Image, out: Path) -> None:
    """Write atomically, so an interrupted fetch never leaves a half PNG that looks done."""
    with atomic_write(out, overwrite=True) as fh:
        img.save(fh, format="PNG", compress_level=6)


def _copyright_path(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


def _fetch_package(package: str, sources: list[PhotoSource], root: Path) -> str:
    """Download and unpack one package; returns its exact version."""
    deb = download_deb(package, root / "debs")
    dest = root / "unpacked" / package
    wanted = [s.path for s in sources] + [_copyright_path(package)]
    if any(not (dest / p).is_file() for p in wanted):
        unpack_deb(deb, dest, wanted)
    return deb_version(deb)


def _extract_photo(src: PhotoSource, root: Path, force: bool) -> Path:
    """Decode one listed file into photos/<name>.png (kept if already there, unless forced)."""
    file = root / "unpacked" / src.package / src.path
    if not file.is_file():
        raise FetchError(f"{src.package}: not in the package: {src.path}")
    out = root / "photos" / f"{src.name}.png"
    if out.is_file() and not force:
        return out
    try:
        img = decode_source(file)
    except Exception as exc:  # any decoder failure is reported per photo
        raise FetchError(f"{src.package}: cannot decode {src.path}: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_png(img, out)
    return out


def _manifest_entry(src: PhotoSource, png: Path, root: Path, version: str) -> dict[str, object]:
    with Image.open(png) as img:
        width, height = img.size
    return {
        "file": png.name,
        "name": src.name,
        "package": src.package,
        "version": version,
        "version_seen": src.version_seen,
        "path": src.path,
        "width": width,
        "height": height,
        "sha256": sha256_of(png),
        "license": read_licence(root / "unpacked" / src.package / _copyright_path(src.package), src.path),
        "note": src.note,
        "jpeg_source": src.jpeg_source,
        "split": split_of(src.name),
    }


def fetch(
    root: Path, tsv: Path | Sequence[Path], force: bool = False
) -> tuple[list[dict[str, object]], list[str]]:
    """Build DIR/photos from the list(s); returns (manifest entries, one-line errors).

    Failures are collected rather than raised so a single vanished package does not cost the rest.
    """
    tsvs = [tsv] if isinstance(tsv, Path) else list(tsv)
    sources = [src for one in tsvs for src in read_sources(one)]
    by_package: dict[str, list[PhotoSource]] = {}
    for src in sources:
        by_package.setdefault(src.package, []).append(src)
    entries: list[dict[str, object]] = []
    errors: list[str] = []
    for package, group in by_package.items():
        try:
            version = _fetch_package(package, group, root)
        except FetchError as exc:
            errors.append(str(exc))
            continue
        for src in group:
            try:
                png = _extract_photo(src, root, force)
            except FetchError as exc:
                errors.append(str(exc))
                continue
            entries.append(_manifest_entry(src, png, root, version))
    manifest = {"source_list": ", ".join(t.name for t in tsvs), "photos": entries}
    (root / "photos").mkdir(parents=True, exist_ok=True)
    (root / "photos" / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return entries, errors


# --------------------------------------------------------------------------------------------
# Using the photos


def read_manifest(photos_dir: Path | str) -> list[dict[str, object]]:
    """The manifest entries written by `fetch`."""
    path = Path(photos_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m export.data fetch DIR` first")
    return list(json.loads(path.read_text(encoding="utf-8"))["photos"])


def select(
    entries: Iterable[dict[str, object]], split: str, include_low_quality: bool = False
) -> list[dict[str, object]]:
    """Entries of one split; the small, heavily compressed demo photos are left out unless asked."""
    if split not in ("train", "val", "detail"):
        raise ValueError(f"split must be 'train', 'val' or 'detail', got {split!r}")
    return [
        e
        for e in entries
        if split_of(str(e["name"])) == split
        and (include_low_quality or e["package"] not in LOW_QUALITY_PACKAGES)
    ]


def _downscale2_float(arr: np.ndarray) -> np.ndarray:
    """Halve with antialiased Lanczos in float: averages away 8x8 blocking and mosquito noise while
    keeping more real detail than a box filter would."""
    h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    arr = arr[:h, :w]
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[:, :, c]), mode="F").resize(
                (w // 2, h // 2), resample=Image.Resampling.LANCZOS
            ),
            dtype=np.float32,
        )
        for c in range(arr.shape[2])
    ]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def load_photo(path: Path | str, jpeg_source: bool) -> np.ndarray:
    """An HR training photo as float32 HxWx3 in [0,1]; JPEG-coded sources are halved first."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return _downscale2_float(arr) if jpeg_source else arr


PREP_VERSION = 1  # bump when load_photo's processing changes, so stale caches are not reused


def prepared_photo(photos_dir: Path | str, entry: dict[str, object], cache: bool = True) -> np.ndarray:
    """`load_photo` of a manifest entry, rounded to 8 bit and cached as .npy beside the photos.

    Decoding a 4K PNG and halving it costs over a second, about a minute for the whole set; the
    cache (keyed by the PNG's sha256) makes every later start near instant. HR targets being 8-bit
    is what any ground-truth image file is anyway.
    """
    photos_dir = Path(photos_dir)
    key = f"{entry['name']}-{str(entry['sha256'])[:16]}-v{PREP_VERSION}.npy"
    cached = photos_dir / ".prepared" / key
    if cache and cached.is_file():
        return np.load(cached)
    arr = load_photo(photos_dir / str(entry["file"]), bool(entry["jpeg_source"]))
    arr8 = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if cache:
        with atomic_write(cached, overwrite=True) as fh:
            np.save(fh, arr8)
    return arr8


def _prepare_all(photos_dir: Path, entries: list[dict[str, object]]) -> list[np.ndarray]:
    """Prepare photos on two threads: PIL releases the GIL while decoding and resizing."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda e: prepared_photo(photos_dir, e), entries))


def _center_crop(img: np.ndarray, max_side: int | None, multiple: int) -> np.ndarray:
    """Largest centred crop with sides a multiple of `multiple`, each at most `max_side`."""
    h, w = img.shape[:2]
    if max_side is not None:
        h, w = min(h, max_side), min(w, max_side)
    h, w = h // multiple * multiple, w // multiple * multiple
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[top : top + h, left : left + w]


def val_images(
    photos_dir: Path | str, max_side: int | None = 256, multiple: int = 4
) -> list[tuple[str, np.ndarray]]:
    """The validation photos as (name, HR float32 HxWx3 on the 8-bit grid), centre-cropped so x4 divides.

    `max_side` keeps evaluation fast; pass None for the full photos.
    """
    photos_dir = Path(photos_dir)
    entries = sorted(select(read_manifest(photos_dir), "val"), key=lambda e: str(e["name"]))
    images = _prepare_all(photos_dir, entries)
    return [
        (str(e["name"]), _center_crop(img, max_side, multiple).astype(np.float32) / 255.0)
        for e, img in zip(entries, images, strict=True)
    ]


def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the square, chosen by k in [0, 8)."""
    out = np.rot90(img, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def _detail(patch: np.ndarray) -> float:
    """Mean absolute horizontal and vertical difference of the green channel: how much texture a
    crop holds (sky and blur score near 0, fur and foliage high)."""
    g = patch[::2, ::2, 1].astype(np.int16)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def make_pair(hr: np.ndarray, scale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) from an HR crop: the canonical bicubic downscale, then rounded to 8 bit like a file."""
    hr = np.ascontiguousarray(hr, dtype=np.float32)
    return quantize_8bit(bicubic_downscale(hr, scale)), hr


def _torch_dataset_base() -> type:
    """torch.utils.data.Dataset when torch is present; the data tools work without torch too."""
    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover - only on machines without the export extra
        return object
    return Dataset


class CropDataset(_torch_dataset_base()):  # type: ignore[misc]
    """Random (lr, hr) training crops, CHW float32 tensors in [0,1].

    All decoded photos are held in memory as 8-bit arrays (a few hundred MB at most): the set is
    small, and decoding PNGs per sample would dominate the step time on two cores. Each item's
    randomness comes from (seed, epoch, index), so results do not depend on worker count or order.
    """

    def __init__(
        self,
        photos_dir: Path | str,
        split: str = "train",
        hr_size: int = 128,
        scale: int = 4,
        length: int = 10_000,
        include_low_quality: bool = False,
        seed: int = 0,
        detail_tries: int = 1,
    ) -> None:
        self.detail_tries = max(1, int(detail_tries))
        if hr_size % scale or hr_size % 4:
            raise ValueError(f"hr_size {hr_size} must be a multiple of 4 and of the scale {scale}")
        self.hr_size, self.scale, self.length, self.seed = hr_size, scale, length, seed
        self.epoch = 0
        photos_dir = Path(photos_dir)
        entries = select(read_manifest(photos_dir), split, include_low_quality)
        images = _prepare_all(photos_dir, entries)
        keep = [i for i, img in enumerate(images) if min(img.shape[:2]) >= hr_size]
        self.names = [str(entries[i]["name"]) for i in keep]
        self.images = [images[i] for i in keep]
        if not self.images:
            raise ValueError(f"no {split} photo in {photos_dir} is at least {hr_size} px on each side")
        # Pick photos in proportion to their area, so every HR pixel is about equally likely.
        areas = np.array([img.shape[0] * img.shape[1] for img in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def set_epoch(self, epoch: int) -> None:
        """New crops each epoch while staying reproducible."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def crop(self, index: int) -> np.ndarray:
        """The augmented HR crop for an index, float32 HxWx3."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = self.images[int(rng.choice(len(self.images), p=self.weights))]
        best, best_detail = None, -1.0
        for _ in range(self.detail_tries):
            top = int(rng.integers(0, img.shape[0] - self.hr_size + 1))
            left = int(rng.integers(0, img.shape[1] - self.hr_size + 1))
            patch = img[top : top + self.hr_size, left : left + self.hr_size]
            detail = _detail(patch) if self.detail_tries > 1 else 0.0
            if detail > best_detail:
                best, best_detail = patch, detail
        patch = best
        return _dihedral(patch, int(rng.integers(0, 8))).astype(np.float32) / 255.0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        lr, hr = make_pair(self.crop(index), self.scale)
        return (
            torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))),
        )


# --------------------------------------------------------------------------------------------
# Command line


def _cmd_fetch(args: argparse.Namespace) -> int:
    tsvs = [Path(t) for t in args.tsv] if args.tsv else default_tsvs()
    for tsv in tsvs:
        if not tsv.is_file():
            print(f"error: photo list not found: {tsv}", file=sys.stderr)
            return 2
    entries, errors = fetch(Path(args.dir), tsvs, force=args.force)
    print(f"{len(entries)} photos in {Path(args.dir) / 'photos'}")
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


def _cmd_list(args: argparse.Namespace) -> int:
    photos_dir = Path(args.dir) / "photos"
    try:
        entries = read_manifest(photos_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split in ("train", "val", "detail"):
        used = select(entries, split, args.include_low_quality)
        every = select(entries, split, True)
        dropped = len(every) - len(used)
        print(f"{split}: {len(used)} photos" + (f" ({dropped} low-quality left out)" if dropped else ""))
        if args.verbose:
            for e in used:
                print(f"  {e['name']}  {e['width']}x{e['height']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`fetch DIR` builds DIR/photos from Debian packages; `list DIR` counts photos per split."""
    parser = argparse.ArgumentParser(prog="python -m export.data", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="download the listed packages and extract the photos")
    p_fetch.add_argument("dir", help="data folder (debs/, unpacked/ and photos/ go here)")
    p_fetch.add_argument(
        "--tsv",
        action="append",
        help="photo list, repeatable (default: shared/data/training-photos.tsv and export/extra-photos.tsv)",
    )
    p_fetch.add_argument("--force", action="store_true", help="re-extract photos that already exist")
    p_fetch.set_defaults(func=_cmd_fetch)
    p_list = sub.add_parser("list", help="count photos per split")
    p_list.add_argument("dir", help="data folder given to fetch")
    p_list.add_argument("--include-low-quality", action="store_true", help="count the kphotoalbum demos")
    p_list.add_argument("-v", "--verbose", action="store_true", help="name every photo")
    p_list.set_defaults(func=_cmd_list)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
