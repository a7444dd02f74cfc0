"""The model folder's ``manifest.json``: what a runtime must know about a set of ONNX graphs.

A model folder holds ``coarse.onnx``, ``condition.onnx``, ``lar_step.onnx``, ``decoder.onnx`` and
this manifest. The manifest is the only place the runtime learns the scale, patch size, tiling
needs (tile multiple, receptive fields) and the sha256 of each graph, so a folder from the Hub or a
user's disk is checked against it before a single graph is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
GRAPH_NAMES = ("coarse", "condition", "lar_step", "decoder")
REQUIRED_FILES = tuple(f"{name}.onnx" for name in GRAPH_NAMES)
# Stages whose receptive fields (LR px) chain up into the tiling margin.
STAGES = ("coarse", "condition", "lar", "decoder")


@dataclass(frozen=True)
class Manifest:
    """Parsed manifest. ``receptive_field`` is in LR pixels, one radius per graph."""

    name: str
    scale: int
    patch_size: int
    codebook_size: int
    tile_multiple: int
    receptive_field: dict[str, int]
    default_temperature: float
    files: dict[str, dict[str, Any]]
    format_version: int = FORMAT_VERSION
    licence: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lar: dict[str, Any] = field(default_factory=dict)
    # Share of the decoder's texture residual added to the coarse image (``--texture``); models
    # made before the knob existed get the full residual they were shipped with.
    default_texture: float = 1.0

    @property
    def context_margin(self) -> int:
        """LR pixels of context a tile needs on each side so its own centre equals the untiled result.

        The stages are chained (coarse -> condition -> LAR -> decoder), so their radii add up; the
        sum is rounded up to the tile multiple so that code patches stay on the global grid.
        """
        total = sum(int(self.receptive_field[name]) for name in STAGES)
        m = self.tile_multiple
        return -(-total // m) * m

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "scale": self.scale,
            "patch_size": self.patch_size,
            "codebook_size": self.codebook_size,
            "tile_multiple": self.tile_multiple,
            "receptive_field": dict(self.receptive_field),
            "default_temperature": self.default_temperature,
            "default_texture": self.default_texture,
            "lar": dict(self.lar),
            "licence": self.licence,
            "training_data": self.training_data,
            "config": self.config,
            "metrics": self.metrics,
            "files": self.files,
        }


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def parse_manifest(data: Any, where: str = "manifest") -> Manifest:
    """Validate a decoded manifest; every problem becomes one ModelError line naming ``where``."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: not a larsr manifest (expected a JSON object)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{where}: unknown manifest format_version {version!r} (this larsr reads {FORMAT_VERSION}); "
            "upgrade larsr or use a model made for it"
        )
    required = (
        "name",
        "scale",
        "patch_size",
        "codebook_size",
        "tile_multiple",
        "receptive_field",
        "default_temperature",
        "files",
    )
    missing = [key for key in required if key not in data]
    if missing:
        raise ModelError(f"{where}: manifest lacks {', '.join(missing)}")
    files = data["files"]
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise ModelError(f"{where}: manifest files must map file names to objects")
    for name, entry in files.items():
        _check_file_entry(name, entry, where)
    absent = [name for name in REQUIRED_FILES if name not in files]
    if absent:
        raise ModelError(f"{where}: manifest has no sha256 for {', '.join(absent)}")
    rf = data["receptive_field"]
    if not isinstance(rf, dict) or not all(name in rf for name in STAGES):
        raise ModelError(f"{where}: manifest receptive_field must name {', '.join(STAGES)}")
    lar = data.get("lar", {})
    if not isinstance(lar, dict):
        raise ModelError(f"{where}: manifest lar must be an object")
    _int(lar, "layers", 1, 64, where, "lar.")
    heads = _int(lar, "heads", 1, 64, where, "lar.")
    features = _int(lar, "features", 1, 4096, where, "lar.")
    if features % heads:
        raise ModelError(
            f"{where}: manifest lar.features ({features}) must be a multiple of lar.heads ({heads})"
        )
    return Manifest(
        name=_text(data, "name", where),
        scale=_int(data, "scale", 1, 16, where),
        patch_size=_int(data, "patch_size", 1, 16, where),
        codebook_size=_int(data, "codebook_size", 2, 1 << 20, where),
        tile_multiple=_int(data, "tile_multiple", 1, 256, where),
        receptive_field={k: _int(rf, k, 0, 4096, where, "receptive_field.") for k in rf},
        default_temperature=_number(data, "default_temperature", 0.0, 2.0, where),
        files=dict(files),
        format_version=int(version),
        licence=str(data.get("licence", "")),
        training_data=dict(data.get("training_data", {}))
        if isinstance(data.get("training_data"), dict)
        else {},
        config=dict(data.get("config", {})) if isinstance(data.get("config"), dict) else {},
        metrics=dict(data.get("metrics", {})) if isinstance(data.get("metrics"), dict) else {},
        lar=dict(lar),
        default_texture=_number(data, "default_texture", 0.0, 1.0, where, default=1.0),
    )


def _int(data: dict, key: str, lo: int, hi: int, where: str, prefix: str = "") -> int:
    """An integer field in [lo, hi]: "four", 1e400, true or 0 are one line naming the key."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ModelError(
            f"{where}: manifest {prefix}{key} must be an integer from {lo} to {hi}, got {value!r}"
        )
    return int(value)


def _number(data: dict, key: str, lo: float, hi: float, where: str, default: float | None = None) -> float:
    value = data.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= float(value) <= hi
    if not ok:  # also refuses nan, which fails every comparison
        raise ModelError(f"{where}: manifest {key} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"{where}: manifest {key} must be a non-empty string, got {value!r}")
    return value


def _check_file_entry(name: object, entry: dict, where: str) -> None:
    """Plain file names only (no folders, no '..', no absolute paths) and a real sha256: every
    reader (loading, --verify, models, the Hub) then stays inside the model folder."""
    plain = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
    if not plain or name.startswith("."):
        raise ModelError(
            f"{where}: manifest file name {name!r} must be a plain file name in the model folder"
        )
    digest = entry.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelError(f"{where}: manifest sha256 of {name} must be 64 lowercase hex digits")
    size = entry.get("bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ModelError(f"{where}: manifest bytes of {name} must be a non-negative integer")


def read_manifest(folder: Path) -> Manifest:
    """Read and validate ``folder/manifest.json`` without touching the graphs."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"{folder}: not a larsr model folder (no {MANIFEST_NAME})")
    return read_manifest_file(path, where=str(path))


def read_manifest_file(path: Path, where: str) -> Manifest:
    """Decode and validate one manifest file; errors name ``where`` (a path or a Hub reference)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ModelError(f"{where}: not a larsr model (unreadable {MANIFEST_NAME}: {exc})") from None
    return parse_manifest(data, where=where)


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Check every graph against its sha256, so a corrupt or swapped file is never loaded."""
    for name in REQUIRED_FILES:
        path = Path(folder) / name
        if not path.is_file():
            raise ModelError(f"{folder}: model file {name} is missing")
        expected = manifest.files[name]["sha256"]
        actual = sha256_of(path)
        if actual != expected:
            raise ModelError(
                f"{path}: sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...); "
                "the file is corrupt or not the one the manifest describes"
            )


def load_manifest(folder: Path, verify: bool = True) -> Manifest:
    """Read the manifest of a model folder and, by default, verify the graphs it names."""
    manifest = read_manifest(folder)
    if verify:
        verify_files(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write atomically (temp + rename) so a crash never leaves a half-written manifest."""
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
