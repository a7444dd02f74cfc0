"""Outputs: a local (or mounted) folder, or a pyarrow filesystem URI."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import TMP_MARKER
from ..errors import ImageError, LarsrError, one_line
from .cluster import INSTALL_HINT

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def scheme_length(uri: str) -> int:
    return uri.index("://") + 3


class OutputStore:
    """Existence checks, reads, writes and clean-up of outputs, for paths or for one URI root.

    Local targets are written by the CLI's own atomic writer (``run_job``). URI targets
    (``s3://bucket/out``, ``gs://...``, ``file:///...``: anything pyarrow's ``FileSystem.from_uri``
    knows whose path is the URI without its scheme) are rendered into a local scratch file by the
    same writer, so their bytes are the same, then copied to a hidden temporary name and moved
    into place, so a reader never sees half an image.
    """

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri
        self.local = uri is None
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = filesystem_of(self.uri or "")
        return self._fs

    def path(self, target: str) -> str:
        """The filesystem path pyarrow wants: the URI without ``scheme://``."""
        return target if self.local else target[scheme_length(target) :]

    def exists(self, target: str) -> bool:
        if self.local:
            return os.path.lexists(target)
        from pyarrow.fs import FileType

        return self.fs.get_file_info(self.path(target)).type != FileType.NotFound

    def read(self, target: str) -> bytes:
        if self.local:
            return Path(target).read_bytes()
        with self.fs.open_input_stream(self.path(target)) as stream:
            return stream.readall()

    def put(self, local: Path, target: str, *, overwrite: bool) -> None:
        """Copy a finished local file to ``target`` under a temporary name, then move it there."""
        dest = self.path(target)
        parent, _, name = dest.rpartition("/")
        tmp = f"{parent}/.{name[:100]}{TMP_MARKER}{uuid.uuid4().hex[:12]}"
        fs = self.fs
        try:
            if parent:
                fs.create_dir(parent, recursive=True)
            with fs.open_output_stream(tmp) as out, open(local, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            if not overwrite and self.exists(target):
                raise ImageError(f"{target}: exists; use --overwrite or --skip-existing")
            fs.move(tmp, dest)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                fs.delete_file(tmp)
            if isinstance(exc, OSError):
                raise ImageError(f"{target}: cannot write: {one_line(exc)}") from exc
            raise

    def sweep(self, targets: Sequence[str]) -> int:
        """Delete the temporary files a killed worker left beside these targets; how many."""
        by_parent: dict[str, set[str]] = {}
        for target in targets:
            parent, _, name = self.path(str(target)).rpartition("/")
            by_parent.setdefault(parent or ".", set()).add(f".{name[:100]}{TMP_MARKER}")
        removed = 0
        for parent, prefixes in by_parent.items():
            for name in self._list(parent):
                if TMP_MARKER in name and any(name.startswith(p) for p in prefixes):
                    with contextlib.suppress(Exception):
                        self._delete(f"{parent}/{name}")
                        removed += 1
        return removed

    def _list(self, parent: str) -> list[str]:
        if self.local:
            with contextlib.suppress(OSError):
                return [entry.name for entry in os.scandir(parent)]
            return []
        from pyarrow.fs import FileSelector

        with contextlib.suppress(Exception):
            infos = self.fs.get_file_info(FileSelector(parent, allow_not_found=True))
            return [info.base_name for info in infos]
        return []

    def _delete(self, path: str) -> None:
        if self.local:
            os.unlink(path)
        else:
            self.fs.delete_file(path)


def filesystem_of(uri: str) -> Any:
    """pyarrow's filesystem for a URI, or one line naming what is wrong with it."""
    try:
        from pyarrow.fs import FileSystem

        fs, path = FileSystem.from_uri(uri)
    except ImportError:
        raise LarsrError(f"-o {uri}: URI outputs need pyarrow; install it with: {INSTALL_HINT}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for unknown schemes
        raise LarsrError(f"-o {uri}: not a filesystem URI pyarrow can open ({one_line(exc)})") from None
    if path.rstrip("/") != uri[scheme_length(uri) :].rstrip("/"):
        raise LarsrError(
            f"-o {uri}: this kind of URI is not supported (use s3://, gs://, file:// or a mounted path)"
        )
    return fs
