"""Model files against their manifest: one sha256 and one verifier for every reader.

Loading, ``larsr download``, ``larsr models`` and ``larsr info --verify`` all check a folder
the same way, so a corrupt or swapped graph is refused with the same one-line message everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError

if TYPE_CHECKING:
    from .manifest import Manifest


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_file_name(name: str, where: str) -> str:
    """A manifest file name, refused unless it stays inside the model folder (manifests come from
    the network: ``../x``, ``/etc/x`` or ``a\\b`` must never reach a path join)."""
    if not name or "\\" in name or name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
        raise ModelError(f"{where}: manifest names an unsafe file path {name!r}")
    return name


@dataclass(frozen=True)
class FileCheck:
    """One file the manifest names, as found in the folder.

    ``state`` is 'verified', 'present' (not hashed), 'missing' or 'corrupt'; ``size`` is the size
    on disk (None when missing), ``actual`` the sha256 on disk when it was hashed.
    """

    name: str
    path: Path
    expected: str
    state: str
    size: int | None = None
    actual: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("verified", "present")

    def problem(self, folder: Path) -> str:
        if self.state == "missing":
            return f"{folder}: model file {self.name} is missing"
        return (
            f"{self.path}: sha256 mismatch (manifest {self.expected[:12]}..., "
            f"file {str(self.actual)[:12]}...); the file is corrupt or not the one the manifest describes"
        )


def verify_folder(
    folder: Path, manifest: Manifest, *, hashes: bool = True, report: bool = False
) -> list[FileCheck]:
    """Check every file ``manifest`` names in ``folder`` against its sha256.

    By default the first missing or mismatching file raises ``ModelError`` (one line naming it), so
    nothing corrupt is ever loaded. ``report=True`` returns a :class:`FileCheck` per file instead, for
    listings; ``hashes=False`` only looks at which files are there.
    """
    folder = Path(folder)
    checks = []
    for name, entry in manifest.files.items():
        path = folder / check_file_name(name, str(folder))
        expected = str(entry["sha256"])
        if not path.is_file():
            check = FileCheck(name, path, expected, "missing")
        else:
            actual = sha256_of(path) if hashes else None
            state = "present" if actual is None else "verified" if actual == expected else "corrupt"
            check = FileCheck(name, path, expected, state, path.stat().st_size, actual)
        if not (report or check.ok):
            raise ModelError(check.problem(folder))
        checks.append(check)
    return checks


def folder_status(checks: Iterable[FileCheck]) -> str:
    """One status for a folder: 'verified', 'unchecked' (not hashed), or what is wrong with it
    ('missing a.onnx, b.onnx', 'corrupt c.onnx')."""
    checks = list(checks)
    for state in ("missing", "corrupt"):
        names = [c.name for c in checks if c.state == state]
        if names:
            return f"{state} {', '.join(names)}"
    return "verified" if all(c.state == "verified" for c in checks) else "unchecked"


def present_size(checks: Iterable[FileCheck]) -> int:
    """Bytes on disk of the files that are there."""
    return sum(c.size or 0 for c in checks)
