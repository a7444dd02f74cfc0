"""The model folder's ``manifest.json``: what a runtime must know about a set of ONNX graphs.

Format 2 names the ``architecture`` that built the graphs (a key of ``larsr_cli.arch``), maps
each of its graph roles to a file with its sha256 and size, and carries that architecture's typed
``spec``; the shared fields (scale, tile multiple, receptive fields) are what tiling needs for
any family. An optional ``precisions`` object adds reduced-precision variants of some roles
(``{"int8": {"coarse": {"file", "sha256", "bytes"}}}``, written by ``export.quantize``); the
fp32 ``graphs`` stay complete, so a runtime that ignores the field still runs the model, and a
manifest without it reads as before. Format 1 folders (LAR-SR only, fields at the top level) are
read into the same object, so models made before the change keep loading. The manifest is the
only place the runtime learns these facts, so a folder from the Hub or a user's disk is checked
against it before a single graph is loaded.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arch import Architecture, ArchSpec, get_architecture
from .atomic import atomic_write
from .errors import ModelError
from .fields import read_int, read_object, read_text
from .integrity import verify_folder

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# fp32 is what ``graphs`` holds; a variant names a reduced precision (``int8`` today). Names are
# short lowercase words so a newer larsr's variant still parses (and its files still verify) here.
BASE_PRECISION = "fp32"
_PRECISION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class GraphFile:
    """One graph of the model: its file in the folder, sha256 and size in bytes."""

    file: str
    sha256: str
    bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True)
class Manifest:
    """Parsed manifest. ``receptive_field`` is in LR pixels, one radius per stage."""

    name: str
    architecture: str
    scale: int
    tile_multiple: int
    receptive_field: dict[str, int]
    graphs: dict[str, GraphFile]
    spec: ArchSpec
    format_version: int = FORMAT_VERSION
    licence: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Reduced-precision variants: precision -> role -> file (a subset of the graph roles).
    precisions: dict[str, dict[str, GraphFile]] = field(default_factory=dict)

    @property
    def architecture_class(self) -> type[Architecture]:
        return get_architecture(self.architecture)

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Every file the model needs, by name: ``{"sha256": ..., "bytes": ...}`` (what the Hub
        downloads and every verifier checks), precision variants included."""
        graphs = [*self.graphs.values(), *(g for v in self.precisions.values() for g in v.values())]
        return {g.file: {"sha256": g.sha256, "bytes": g.bytes} for g in graphs}

    @property
    def precision_names(self) -> list[str]:
        """``fp32`` first, then every variant the folder ships (``["fp32", "int8"]``)."""
        return [BASE_PRECISION, *sorted(self.precisions)]

    @property
    def default_temperature(self) -> float:
        return self.spec.default_temperature

    @property
    def default_texture(self) -> float:
        return self.spec.default_texture

    @property
    def context_margin(self) -> int:
        """LR pixels of context a tile needs on each side so its own centre equals the untiled result.

        The stages are chained, so their radii add up; the sum is rounded up to the tile multiple
        so that code patches stay on the global grid.
        """
        return self.margin_of(self.architecture_class.stages)

    def margin_of(self, stages: tuple[str, ...]) -> int:
        """The same for a chain of some of the stages (two-pass tiling runs them separately)."""
        total = sum(int(self.receptive_field[name]) for name in stages)
        m = self.tile_multiple
        return -(-total // m) * m

    def to_json(self) -> dict[str, Any]:
        out = self._base_json()
        if self.precisions:  # absent, not empty, so a model without variants writes what it read
            out["precisions"] = {
                name: {role: g.to_json() for role, g in roles.items()}
                for name, roles in self.precisions.items()
            }
        return out

    def _base_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "name": self.name,
            "scale": self.scale,
            "tile_multiple": self.tile_multiple,
            "receptive_field": dict(self.receptive_field),
            "graphs": {role: g.to_json() for role, g in self.graphs.items()},
            "spec": self.spec.to_json(),
            "licence": self.licence,
            "training_data": self.training_data,
            "config": self.config,
            "metrics": self.metrics,
        }


def parse_manifest(data: Any, where: str = "manifest") -> Manifest:
    """Validate a decoded manifest; every problem becomes one ModelError line naming ``where``."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: not a larsr manifest (expected a JSON object)")
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ModelError(
            f"{where}: unknown manifest format_version {version!r} (this larsr reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade larsr or use a model made for it"
        )
    if version == 1:
        data = upgrade_v1(data, where)
    required = ("name", "architecture", "scale", "tile_multiple", "receptive_field", "graphs", "spec")
    missing = [key for key in required if key not in data]
    if missing:
        raise ModelError(f"{where}: manifest lacks {', '.join(missing)}")
    arch = get_architecture(data["architecture"], where)
    graphs = _graphs(data["graphs"], arch, where)
    precisions = _precisions(data.get("precisions", {}), arch, graphs, where)
    rf = data["receptive_field"]
    if not isinstance(rf, dict) or not all(name in rf for name in arch.stages):
        raise ModelError(f"{where}: manifest receptive_field must name {', '.join(arch.stages)}")
    return Manifest(
        name=read_text(data, "name", where),
        architecture=arch.id,
        scale=read_int(data, "scale", 1, 16, where),
        tile_multiple=read_int(data, "tile_multiple", 1, 256, where),
        receptive_field={k: read_int(rf, k, 0, 4096, where, "receptive_field.") for k in rf},
        graphs=graphs,
        spec=arch.parse_spec(data["spec"], where),
        format_version=int(version),
        licence=str(data.get("licence", "")),
        training_data=_optional_object(data, "training_data"),
        config=_optional_object(data, "config"),
        metrics=_optional_object(data, "metrics"),
        precisions=precisions,
    )


#: Where format 1 kept each LAR-SR spec field (the prefix an error names it with).
V1_FIELD_PREFIXES = {
    **dict.fromkeys(("layers", "heads", "features", "index_stride"), "lar."),
    **dict.fromkeys(("patch_size", "codebook_size", "default_temperature", "default_texture"), ""),
    "coarse_up_features": "config.",
}


def upgrade_v1(data: dict, where: str) -> dict:
    """A format-1 manifest (LAR-SR fields at the top level, ``files`` by name) as format 2."""
    files = data.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise ModelError(f"{where}: manifest files must map file names to objects")
    missing = [k for k in ("patch_size", "codebook_size", "default_temperature") if k not in data]
    if missing:
        raise ModelError(f"{where}: manifest lacks {', '.join(missing)}")
    lar = read_object(data, "lar", where)
    config = data["config"] if isinstance(data.get("config"), dict) else {}
    spec = {
        **{k: lar[k] for k in ("layers", "heads", "features", "index_stride") if k in lar},
        **{k: data[k] for k in ("patch_size", "codebook_size", "default_temperature") if k in data},
        "default_texture": data.get("default_texture", 1.0),
        "coarse_up_features": config.get("coarse_up_features", 64),
    }
    # The v2 rules, with errors that name the keys as the user's format-1 file has them.
    get_architecture("lar-sr").parse_spec(spec, where, names=V1_FIELD_PREFIXES)
    roles = get_architecture("lar-sr").graph_roles
    graphs = {
        role: {"file": f"{role}.onnx", **files[f"{role}.onnx"]} for role in roles if f"{role}.onnx" in files
    }
    absent = [f"{role}.onnx" for role in roles if role not in graphs]
    if absent:
        raise ModelError(f"{where}: manifest has no sha256 for {', '.join(absent)}")
    for name, entry in files.items():
        _check_file_entry(name, entry, where)
    kept = (
        "name",
        "scale",
        "tile_multiple",
        "receptive_field",
        "licence",
        "training_data",
        "config",
        "metrics",
    )
    return {
        **{k: data[k] for k in kept if k in data},
        "architecture": "lar-sr",
        "graphs": graphs,
        "spec": spec,
    }


def _graphs(graphs: Any, arch: type[Architecture], where: str) -> dict[str, GraphFile]:
    if not isinstance(graphs, dict) or not all(isinstance(v, dict) for v in graphs.values()):
        raise ModelError(f"{where}: manifest graphs must map graph roles to objects")
    absent = [role for role in arch.graph_roles if role not in graphs]
    if absent:
        raise ModelError(f"{where}: manifest graphs lack {', '.join(absent)} (needed by {arch.id})")
    out = {}
    for role in arch.graph_roles:
        entry = graphs[role]
        name = entry.get("file")
        _check_file_entry(name, entry, where)
        out[role] = GraphFile(str(name), str(entry["sha256"]), entry.get("bytes"))
    if len({g.file for g in out.values()}) != len(out):
        raise ModelError(f"{where}: manifest graphs must name a different file for each role")
    return out


def _precisions(
    data: Any, arch: type[Architecture], graphs: dict[str, GraphFile], where: str
) -> dict[str, dict[str, GraphFile]]:
    """``precisions``: every variant file passes the checks of ``graphs`` (plain name, real
    sha256), names a role of the architecture, and no two files of the model share a name (a
    variant must never be verified as, or overwrite, another graph)."""
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ModelError(f"{where}: manifest precisions must map precision names to objects of graph roles")
    out: dict[str, dict[str, GraphFile]] = {}
    seen = {g.file for g in graphs.values()}
    for name, roles in data.items():
        if not name or set(name) - _PRECISION_CHARS or name in (BASE_PRECISION, "auto"):
            raise ModelError(
                f"{where}: manifest precision {name!r} must be a lowercase name other than "
                f"{BASE_PRECISION} (the graphs are {BASE_PRECISION}) and auto"
            )
        unknown = [role for role in roles if role not in arch.graph_roles]
        if unknown:
            raise ModelError(
                f"{where}: manifest precisions.{name} names unknown roles {', '.join(map(str, unknown))} "
                f"({arch.id} has {', '.join(arch.graph_roles)})"
            )
        variant = {}
        for role in arch.graph_roles:
            if role not in roles:
                continue
            entry = roles[role]
            if not isinstance(entry, dict):
                raise ModelError(f"{where}: manifest precisions.{name}.{role} must be an object")
            file = entry.get("file")
            _check_file_entry(file, entry, where)
            if file in seen:
                raise ModelError(
                    f"{where}: manifest precisions.{name}.{role} reuses the file name {file}; "
                    "every graph needs its own file"
                )
            seen.add(str(file))
            variant[role] = GraphFile(str(file), str(entry["sha256"]), entry.get("bytes"))
        if variant:
            out[name] = variant
    return out


def _optional_object(data: dict, key: str) -> dict[str, Any]:
    value = data.get(key, {})
    return dict(value) if isinstance(value, dict) else {}


def _check_file_entry(name: object, entry: dict, where: str) -> None:
    """Plain file names only (no folders, no '..', no absolute paths) and a real sha256: every
    reader (loading, --verify, models, the Hub) then stays inside the model folder."""
    plain = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
    if not isinstance(name, str) or not plain or name.startswith("."):
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


def _decode_json(text: str) -> Any:
    """``json.loads`` with the garbage collector paused: a manifest nested deep enough to hit the
    recursion limit could otherwise trigger a collection whose finalizers (of anything garbage
    in the process) run at that depth, fail, and print "Exception ignored ... Traceback" beside
    the one-line error (seen once in CI on a 100000-deep array)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if was_enabled:
            gc.enable()


def read_manifest_file(path: Path, where: str) -> Manifest:
    """Decode and validate one manifest file; errors name ``where`` (a path or a Hub reference)."""
    try:
        data = _decode_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ModelError(f"{where}: not a larsr model (unreadable {MANIFEST_NAME}: {exc})") from None
    return parse_manifest(data, where=where)


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Check every graph against its sha256, so a corrupt or swapped file is never loaded."""
    verify_folder(Path(folder), manifest)


def load_manifest(folder: Path, verify: bool = True) -> Manifest:
    """Read the manifest of a model folder and, by default, verify the graphs it names."""
    manifest = read_manifest(folder)
    if verify:
        verify_files(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write atomically so a crash never leaves a half-written manifest."""
    path = Path(folder) / MANIFEST_NAME
    with atomic_write(path, overwrite=True) as fh:
        fh.write((json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n").encode("utf-8"))
    return path
