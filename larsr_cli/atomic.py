"""Atomic, no-clobber file writes.

An upscale can take minutes and a batch can be interrupted at any point, so an output file must
either be complete or not exist at all: a half-written PNG that looks like a finished result is
worse than no file. Everything is written to a hidden temporary file next to the target (same
directory, so the final rename never crosses a filesystem) and renamed into place only once fully
written and flushed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from larsr_cli.errors import ImageError

TMP_MARKER = ".larsr-tmp-"
"""Part of every temporary file name, so stale ones (after a power cut) are easy to find."""

_MAX_NAME_IN_TMP = 100
"""Keep temporary names under NAME_MAX even for very long target names."""


def _read_umask() -> int:
    """Read the process umask once; os.umask can only be read by setting it, so do it at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()

_NO_HARDLINK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK")
    if hasattr(errno, name)
)
"""errno values meaning "this filesystem cannot hard-link", as opposed to a real write failure."""


class TempSwappedError(ImageError):
    """The temporary file's name was pointed at another file while we wrote ours."""


def exists_message(path: Path) -> str:
    """The one-line refusal shared by the early check and the final no-clobber commit."""
    return f"{path}: exists; pass overwrite=True to replace it (larsr: --overwrite or --skip-existing)"


def os_reason(exc: OSError) -> str:
    """A short, single-line reason for an OSError (strerror without the repeated file name)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return " ".join(str(reason).split())


@contextlib.contextmanager
def atomic_write(path: str | Path, *, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces ``path`` only if the block finishes cleanly.

    On any exception, KeyboardInterrupt included, the temporary file is removed and an existing
    ``path`` is left untouched. Without ``overwrite`` an existing ``path`` is never replaced, even
    if it appears while we were writing. Missing parent folders are created, because batch
    outputs mirror input folder trees. OS failures become one-line ``ImageError``s.
    """
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise ImageError(exists_message(path))
    _ensure_dir(path)
    fd, tmp = _make_temp(path)
    try:
        # Everything about the temp file goes through its descriptor: in a folder others can write
        # to, the *name* may be swapped for another file while we work (it used to be chmod'ed
        # and linked by name, so a swap made larsr chmod and publish someone else's file).
        with os.fdopen(fd, "wb") as fp:
            yield fp
            fp.flush()
            os.fchmod(fp.fileno(), _final_mode(path))
            os.fsync(fp.fileno())
            _check_still_ours(tmp, os.fstat(fp.fileno()), path)
        _commit(tmp, path, overwrite)
    except BaseException as exc:
        if not isinstance(exc, TempSwappedError):
            _remove_quietly(tmp)  # a swapped name is someone else's file now: leave it alone
        if isinstance(exc, OSError):
            raise ImageError(f"{path}: cannot write: {os_reason(exc)}") from exc
        raise


def _ensure_dir(path: Path) -> None:
    """Create the output folder, turning the usual failures into one readable line."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file sits where a folder should be
        raise ImageError(f"{path}: cannot write: {parent} is not a directory") from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot create output folder {parent}: {os_reason(exc)}") from exc
    if not parent.is_dir():
        raise ImageError(f"{path}: cannot write: {parent} is not a directory")


def _make_temp(path: Path) -> tuple[int, Path]:
    """Create the hidden temporary file beside ``path`` (same filesystem, so rename is atomic);
    the open descriptor is the only handle trusted from here on."""
    prefix = f".{path.name[:_MAX_NAME_IN_TMP]}{TMP_MARKER}"
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write to {path.parent}: {os_reason(exc)}") from exc
    return fd, Path(name)


def _check_still_ours(tmp: Path, ours: os.stat_result, path: Path) -> None:
    """Refuse to publish when the temp name no longer names the file we wrote (same device and
    inode, not following links)."""
    try:
        now = os.lstat(tmp)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino):
        raise TempSwappedError(
            f"{path}: not written: its temporary file {tmp.name} was replaced by another file"
        )


def _final_mode(path: Path) -> int:
    """mkstemp makes 0600 files; give outputs the permissions a plain open() would have given."""
    try:
        return os.stat(path).st_mode & 0o7777  # replacing: keep the old file's permissions
    except OSError:
        return 0o666 & ~_UMASK


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished file into place; without overwrite, refuse atomically if path exists.

    ``os.link`` fails if the target exists, which closes the race between our early existence
    check and the rename. Filesystems without hard links fall back to check-then-replace.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise ImageError(exists_message(path)) from exc
    except OSError as exc:
        if exc.errno not in _NO_HARDLINK_ERRNOS:
            raise
        if os.path.lexists(path):
            raise ImageError(exists_message(path)) from exc
        os.replace(tmp, path)
        return
    _remove_quietly(tmp)


def _remove_quietly(tmp: Path) -> None:
    """Best-effort cleanup: a failure to delete must not hide the original error."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
