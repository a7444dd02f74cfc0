"""Models from the Hugging Face Hub: ``hf://`` references, verified downloads, the cached-model list.

Everything goes through ``huggingface_hub`` so the cache layout, ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` behave exactly as for every other Hub model.
What this module adds is the larsr contract: only the files the manifest names are fetched, each is
checked against the manifest's sha256 before the folder is handed out, and a file that fails the
check is deleted from disk so that nothing corrupt or half-written can ever be loaded.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2
from huggingface_hub import constants, hf_hub_download, scan_cache_dir, snapshot_download
from huggingface_hub.errors import (
    CacheNotFound,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .errors import ModelError
from .manifest import MANIFEST_NAME, Manifest, read_manifest_file, sha256_of

HF_PREFIX = "hf://"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


# --------------------------------------------------------------------------------------------------
# References


@dataclass(frozen=True)
class HubRef:
    """A model on the Hub: repo, optional folder inside it, optional revision (branch, tag or commit)."""

    repo_id: str
    subfolder: str = ""
    revision: str | None = None

    def __str__(self) -> str:
        text = HF_PREFIX + self.repo_id
        if self.subfolder:
            text += "/" + self.subfolder
        if self.revision:
            text += "@" + self.revision
        return text

    def repo_path(self, name: str) -> str:
        """Path of ``name`` inside the repo, because the model may live in a subfolder."""
        return f"{self.subfolder}/{name}" if self.subfolder else name

    @property
    def manifest_path(self) -> str:
        return self.repo_path(MANIFEST_NAME)


def is_hub_ref(text: str) -> bool:
    return text.startswith(HF_PREFIX)


def parse_hub_ref(text: str, revision: str | None = None) -> HubRef:
    """Parse ``hf://OWNER/REPO[/SUB/FOLDER][@REVISION]`` (the ``hf://`` may be left out).

    Everything after the first ``@`` is the revision, so branch names with slashes and
    ``refs/pr/N`` work. ``revision`` (the ``--revision`` option) may repeat the one in the text but
    never contradict it, so a pinned reference cannot be silently overridden.
    """
    body = text[len(HF_PREFIX) :] if is_hub_ref(text) else text
    path, sep, inline_rev = body.partition("@")
    if sep and not inline_rev:
        raise ModelError(f"{text}: empty revision after '@'")
    if inline_rev and revision and inline_rev != revision:
        raise ModelError(
            f"{text}: revision {inline_rev!r} in the reference contradicts --revision {revision!r}"
        )
    parts = path.strip("/").split("/")
    if len(parts) < 2 or any(not part for part in parts):
        raise ModelError(f"{text}: expected hf://OWNER/REPO[/SUBFOLDER][@REVISION]")
    repo_id = "/".join(parts[:2])
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ModelError(f"{text}: invalid repo id ({_first_line(exc)})") from None
    subfolder = "/".join(parts[2:])
    if any(part in (".", "..") for part in parts[2:]):
        raise ModelError(f"{text}: the subfolder may not contain '.' or '..'")
    return HubRef(repo_id=repo_id, subfolder=subfolder, revision=inline_rev or revision or None)


# --------------------------------------------------------------------------------------------------
# Progress bars: huggingface_hub reports through a tqdm-like class; these adapt it.


class QuietBar:
    """A tqdm stand-in that shows nothing.

    Passing our own class (instead of letting huggingface_hub pick its tqdm) keeps library output
    off the terminal; it carries every attribute huggingface_hub 2.x touches on its bars.
    """

    def __init__(self, *args: Any, total: float | None = None, initial: float = 0, **kwargs: Any) -> None:
        self.n = initial
        self.total = total

    def __enter__(self) -> QuietBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def format_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "rate": None}

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0

    def update_transfer(self, n: float | None = 1) -> None:
        """Network bytes: not counted, ``update`` already counts the bytes written to disk."""

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass


class RichDownloadProgress:
    """One rich progress bar per model file, fed by huggingface_hub's per-file download hooks."""

    def __init__(self, console: Any = None, disable: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
        # Started with the first file, so that a failure before any download prints no empty bar.
        self._started = False

    def __enter__(self) -> RichDownloadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def file_bar(self, label: str) -> tuple[type[QuietBar], Any]:
        """A bar class bound to a new task (the library instantiates the class itself) and the task id."""
        progress = self._progress
        if not self._started:
            progress.start()
            self._started = True
        task = progress.add_task(label, total=None)

        class _Bar(QuietBar):
            def __init__(self, *args: Any, total: float | None = None, initial: float = 0, **kw: Any) -> None:
                self._n = initial
                self._total = total
                progress.update(task, total=total, completed=initial)

            @property
            def n(self) -> float:
                return self._n

            @property
            def total(self) -> float | None:
                return self._total

            @total.setter
            def total(self, value: float | None) -> None:
                self._total = value
                progress.update(task, total=value)

            def update(self, n: float | None = 1) -> None:
                self._n += n or 0
                progress.update(task, advance=n or 0)

        return _Bar, task

    def finish(self, task: Any, size: int) -> None:
        """Show the file as complete, also when it came from the cache and no bar was ever opened."""
        self._progress.update(task, total=size, completed=size)


# --------------------------------------------------------------------------------------------------
# Download and verification


@dataclass(frozen=True)
class HubModel:
    """A verified model folder obtained from the Hub (``path`` holds manifest.json and the graphs)."""

    ref: HubRef
    path: Path
    commit: str | None
    manifest: Manifest
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files.values())


def fetch_manifest(ref: HubRef, *, local_dir: Path | None = None, offline: bool | None = None) -> HubModel:
    """Get and validate only ``manifest.json``: enough for ``larsr info`` and to know what to download."""
    local_files_only = bool(offline)
    try:
        with _library_warnings_muted():
            root = snapshot_download(
                ref.repo_id,
                revision=ref.revision,
                allow_patterns=[_escape_pattern(ref.manifest_path)],
                local_dir=local_dir,
                local_files_only=local_files_only,
                tqdm_class=QuietBar,
                max_workers=1,
            )
    except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
        raise _hub_error(exc, ref, local_files_only) from None
    root_path = Path(root)
    commit = _commit_of(root_path, ref, local_dir)
    folder = root_path / ref.subfolder if ref.subfolder else root_path
    manifest_file = folder / MANIFEST_NAME
    where = str(replace(ref, revision=ref.revision or constants.DEFAULT_REVISION))
    if not manifest_file.is_file():
        raise ModelError(f"{where}: not a larsr model (the repo has no {ref.manifest_path})")
    manifest = read_manifest_file(manifest_file, where=where)
    for name in manifest.files:
        _check_relative(name, where)
    return HubModel(ref=ref, path=folder, commit=commit, manifest=manifest)


def download_model(
    ref: HubRef,
    *,
    local_dir: Path | None = None,
    offline: bool | None = None,
    progress: RichDownloadProgress | None = None,
) -> HubModel:
    """Fetch the manifest, then exactly the files it names, and verify every sha256.

    The files are asked for at the commit the manifest came from, so a branch that moves during
    the download cannot mix two versions. When everything is already cached no request is made.
    """
    head = fetch_manifest(ref, local_dir=local_dir, offline=offline)
    revision = head.commit or ref.revision
    files: dict[str, Path] = {}
    for name, entry in head.manifest.files.items():
        bar, task = progress.file_bar(name) if progress else (QuietBar, None)
        path = _download_file(ref, name, revision, local_dir, bool(offline), bar)
        _verify_or_remove(path, str(entry["sha256"]), ref, name, local_dir)
        files[name] = path
        if progress:
            progress.finish(task, path.stat().st_size)
    return replace(head, files=files)


def _download_file(
    ref: HubRef, name: str, revision: str | None, local_dir: Path | None, offline: bool, bar: type
) -> Path:
    try:
        with _library_warnings_muted():
            path = hf_hub_download(
                ref.repo_id,
                ref.repo_path(name),
                revision=revision,
                local_dir=local_dir,
                local_files_only=offline,
                tqdm_class=bar,
            )
    except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
        raise _hub_error(exc, ref, offline, filename=name) from None
    return Path(path)


def _verify_or_remove(path: Path, expected: str, ref: HubRef, name: str, local_dir: Path | None) -> None:
    actual = sha256_of(path)
    if actual == expected:
        return
    _remove_cached_file(path, local_dir)
    raise ModelError(
        f"{ref}: {name} failed verification (manifest sha256 {expected[:12]}..., got {actual[:12]}...); "
        "the bad file was deleted, run the command again to re-download it"
    )


def _remove_cached_file(path: Path, local_dir: Path | None) -> None:
    """Delete a bad file so it can never be loaded, nor be mistaken for a finished download.

    In the HF cache the snapshot entry is a symlink to a blob that other snapshots of the same repo
    may share: the blob and every link to it go, or the cache scanner would report the repo broken.
    """
    if local_dir is not None or not path.is_symlink():
        path.unlink(missing_ok=True)
        return
    blob = Path(os.path.realpath(path))
    snapshots = path
    while snapshots.name != "snapshots" and snapshots.parent != snapshots:
        snapshots = snapshots.parent
    if snapshots.name == "snapshots":
        for link in snapshots.rglob("*"):
            if link.is_symlink() and Path(os.path.realpath(link)) == blob:
                link.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    # Only a blob of this repo's own cache folder is ours to delete: a crafted snapshot link can
    # point anywhere, and following it must never delete a user's file.
    repo_blobs = snapshots.parent / "blobs"
    if snapshots.name == "snapshots" and blob.parent == Path(os.path.realpath(repo_blobs)):
        blob.unlink(missing_ok=True)


@contextmanager
def _library_warnings_muted() -> Iterator[None]:
    """Hide huggingface_hub's warnings ("No files matched...", "Returning existing local_dir...").

    Each such case ends in a clearer larsr message or is expected (offline use), and a second,
    library-worded line would break the one-line error promise. A level set by the user is kept.
    """
    logger = logging.getLogger("huggingface_hub")
    previous = logger.level
    if previous in (logging.NOTSET, logging.WARNING):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _commit_of(root: Path, ref: HubRef, local_dir: Path | None) -> str | None:
    """The commit the files came from: the snapshot folder name, or the local-dir download metadata."""
    if local_dir is None:
        return root.name if _COMMIT_RE.fullmatch(root.name) else None
    try:  # no public API reads the local-dir metadata; without it we only lose the commit display
        from huggingface_hub._local_folder import read_download_metadata

        meta = read_download_metadata(Path(local_dir), ref.manifest_path)
    except Exception:  # noqa: BLE001
        return None
    return meta.commit_hash if meta is not None else None


def _check_relative(name: str, where: str) -> None:
    """Manifest file names come from the network: never let one point outside the model folder."""
    pure = PurePosixPath(name)
    if not name or "\\" in name or pure.is_absolute() or any(p in ("..", ".", "") for p in name.split("/")):
        raise ModelError(f"{where}: manifest names an unsafe file path {name!r}")


def _escape_pattern(path: str) -> str:
    """allow_patterns are fnmatch patterns; brackets make the special characters literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


# --------------------------------------------------------------------------------------------------
# Errors: one line per failure, saying what to do


def _hub_error(exc: Exception, ref: HubRef, local_only: bool, filename: str | None = None) -> ModelError:
    where = str(ref)
    repo = ref.repo_id
    token_hint = "set HF_TOKEN or run `hf auth login`"
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, GatedRepoError):
        return ModelError(
            f"{where}: {repo} is a gated repo: accept its conditions on the Hub and {token_hint}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return ModelError(
            f"{where}: repository {repo} not found on {constants.ENDPOINT} "
            f"(if it is private, {token_hint} with a token that can read it)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelError(f"{where}: revision {ref.revision!r} not found in {repo}")
    if isinstance(exc, RemoteEntryNotFoundError):
        return ModelError(f"{where}: {filename or 'a file'} named by the manifest is missing from the repo")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return ModelError(f"{where}: the Hub refused access (HTTP {status}); check HF_TOKEN")
        return ModelError(f"{where}: the Hub answered HTTP {status} ({_first_line(exc)})")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        if local_only or constants.is_offline_mode():
            return ModelError(
                f"{where}: not in the local cache ({constants.HF_HUB_CACHE}) and offline mode is on; "
                "download it once with network access (`larsr download`)"
            )
        return ModelError(
            f"{where}: cannot reach the Hub at {constants.ENDPOINT} and the model is not in the local cache "
            f"({constants.HF_HUB_CACHE}); check the network or HF_ENDPOINT"
        )
    if isinstance(exc, (httpx2.HTTPError, ConnectionError)):
        return ModelError(f"{where}: network error talking to {constants.ENDPOINT}: {_first_line(exc)}")
    if isinstance(exc, HFValidationError):
        return ModelError(f"{where}: {_first_line(exc)}")
    if isinstance(exc, OSError):
        return ModelError(f"{where}: download failed: {_first_line(exc)}")
    return ModelError(f"{where}: download failed ({type(exc).__name__}: {_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


# --------------------------------------------------------------------------------------------------
# The cache listing


@dataclass(frozen=True)
class CachedModel:
    """A larsr model found in the HF cache; ``status`` is 'verified', 'unchecked' or what is wrong."""

    ref: HubRef
    commit: str
    refs: tuple[str, ...]
    path: Path
    manifest: Manifest
    size: int
    status: str

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def cached_models(cache_dir: Path | None = None, verify: bool = True) -> list[CachedModel]:
    """Every larsr model (a valid manifest.json at any depth) in every cached model repo revision."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    found: list[CachedModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash)):
            found.extend(
                _models_in_snapshot(
                    repo.repo_id, rev.commit_hash, tuple(sorted(rev.refs)), Path(rev.snapshot_path), verify
                )
            )
    return found


def _models_in_snapshot(
    repo_id: str, commit: str, refs: tuple[str, ...], snapshot: Path, verify: bool
) -> Iterator[CachedModel]:
    for manifest_file in sorted(snapshot.rglob(MANIFEST_NAME)):
        try:
            manifest = read_manifest_file(manifest_file, where=str(manifest_file))
        except ModelError:
            continue  # some other library's manifest.json, or a broken one: not ours to list
        folder = manifest_file.parent
        sub = folder.relative_to(snapshot).as_posix()
        revision = "main" if "main" in refs else (refs[0] if refs else commit)
        ref = HubRef(repo_id=repo_id, subfolder="" if sub == "." else sub, revision=revision)
        size, status = _check_folder(folder, manifest, verify)
        yield CachedModel(
            ref=ref, commit=commit, refs=refs, path=folder, manifest=manifest, size=size, status=status
        )


def _check_folder(folder: Path, manifest: Manifest, verify: bool) -> tuple[int, str]:
    """Total size of the present files and a one-word-ish status of the folder against the manifest."""
    size, missing, corrupt = 0, [], []
    for name, entry in manifest.files.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
            continue
        size += path.stat().st_size
        if verify and sha256_of(path) != entry.get("sha256"):
            corrupt.append(name)
    if missing:
        return size, "missing " + ", ".join(missing)
    if corrupt:
        return size, "corrupt " + ", ".join(corrupt)
    return size, "verified" if verify else "unchecked"
