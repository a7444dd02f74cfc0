"""Models from the Hugging Face Hub: ``hf://`` references, verified downloads, the cached-model list.

Everything goes through huggingface_hub's public API (``hf_hub_download``, ``scan_cache_dir``), so
the cache layout, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and
``HF_TOKEN`` behave exactly as for every other Hub model. What this module adds is the larsr
contract: the manifest first, then exactly the files it names, at the commit the manifest came
from; each is checked against the manifest's sha256 before the folder is handed out, and a file
that fails is deleted so that nothing corrupt or half-written can ever be loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from huggingface_hub import constants, hf_hub_download, scan_cache_dir
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
    validate_repo_id,
)

from . import __version__
from .errors import ModelError
from .integrity import check_file_name, folder_status, present_size, verify_folder
from .manifest import MANIFEST_NAME, Manifest, read_manifest_file
from .registry import HF_PREFIX

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


def parse_hub_ref(text: str, revision: str | None = None) -> HubRef:
    """Parse ``hf://OWNER/REPO[/SUB/FOLDER][@REVISION]`` (the ``hf://`` may be left out).

    Everything after the first ``@`` is the revision, so branch names with slashes and
    ``refs/pr/N`` work. ``revision`` (the ``--revision`` option) may repeat the one in the text but
    never contradict it, so a pinned reference cannot be silently overridden.
    """
    body = text[len(HF_PREFIX) :] if text.startswith(HF_PREFIX) else text
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
    except hub_errors.HFValidationError as exc:
        raise ModelError(f"{text}: invalid repo id ({_first_line(exc)})") from None
    if any(part in (".", "..") for part in parts[2:]):
        raise ModelError(f"{text}: the subfolder may not contain '.' or '..'")
    return HubRef(repo_id=repo_id, subfolder="/".join(parts[2:]), revision=inline_rev or revision or None)


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
    local_only = bool(offline) or constants.HF_HUB_OFFLINE
    if local_dir is None:
        # The cache records the revision in refs/ (so offline use finds it) and keeps the file
        # under snapshots/<commit>/<path in the repo>: the commit it came from.
        path = Path(_download(ref, MANIFEST_NAME, ref.revision, None, local_only))
        commit: str | None = path.parents[ref.manifest_path.count("/")].name
    else:
        # A dry run resolves the revision (from the Hub, or offline from the local dir's records).
        head = _download(ref, MANIFEST_NAME, ref.revision, local_dir, local_only, dry_run=True)
        commit = getattr(head, "commit_hash", None)  # a plain path when the dir has no records
        path = Path(_download(ref, MANIFEST_NAME, commit or ref.revision, local_dir, local_only))
    where = str(_with_default_revision(ref))
    manifest = read_manifest_file(path, where=where)
    for name in manifest.files:
        check_file_name(name, where)
    return HubModel(ref=ref, path=path.parent, commit=commit, manifest=manifest)


def download_model(
    ref: HubRef, *, local_dir: Path | None = None, offline: bool | None = None, progress: bool = False
) -> HubModel:
    """Fetch the manifest, then exactly the files it names, and verify every sha256.

    The files are asked for at the commit the manifest came from, so a branch that moves during
    the download cannot mix two versions; once cached, they are read without a request.
    ``progress`` shows huggingface_hub's own bars on stderr.
    """
    head = fetch_manifest(ref, local_dir=local_dir, offline=offline)
    local_only = bool(offline) or constants.HF_HUB_OFFLINE
    revision = head.commit or ref.revision
    files = {
        name: Path(_download(ref, name, revision, local_dir, local_only, progress=progress))
        for name in head.manifest.files
    }
    bad = [c for c in verify_folder(head.path, head.manifest, report=True) if not c.ok]
    for check in bad:
        _remove_bad_file(check.path, ref, local_dir)
    if bad:
        first = bad[0]
        raise ModelError(
            f"{ref}: {first.name} failed verification (manifest sha256 {first.expected[:12]}..., "
            f"got {str(first.actual)[:12]}...); the bad file was deleted, run the command again to "
            "re-download it"
        )
    return replace(head, files=files)


def _download(
    ref: HubRef,
    name: str,
    revision: str | None,
    local_dir: Path | None,
    local_only: bool,
    progress: bool = False,
    **kwargs: Any,
) -> Any:
    try:
        with _library_output(progress):
            return hf_hub_download(
                ref.repo_id,
                ref.repo_path(name),
                revision=revision,
                local_dir=local_dir,
                local_files_only=local_only,
                library_name="larsr",
                library_version=__version__,
                **kwargs,
            )
    except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
        raise _hub_error(exc, ref, local_only, name) from None


@contextmanager
def _library_output(progress: bool) -> Iterator[None]:
    """huggingface_hub's progress bars only when asked for, its warnings never.

    Its warnings ("Couldn't access the Hub ... Defaulting to existing file") either end in a
    clearer larsr message or are expected (offline use), and a second, library-worded line would
    break the one-line error promise. A log level or progress setting of the user's is kept.
    """
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    if level in (logging.NOTSET, logging.WARNING):
        logger.setLevel(logging.ERROR)
    hide = not progress and not are_progress_bars_disabled()
    if hide:
        disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            enable_progress_bars()
        logger.setLevel(level)


def _remove_bad_file(path: Path, ref: HubRef, local_dir: Path | None) -> None:
    """Delete a bad file so it can never be loaded, nor be mistaken for a finished download.

    In the HF cache the snapshot entry is a symlink to a blob that other snapshots of the same repo
    may share: the blob and every link to it go, or the cache scanner would report the repo broken.
    Only a blob inside this repo's own ``<cache>/models--*/blobs/`` is deleted: a crafted snapshot
    link can point anywhere, and following it must never delete a user's file.
    """
    storage = Path(constants.HF_HUB_CACHE) / ("models--" + ref.repo_id.replace("/", "--"))
    snapshots = storage / "snapshots"
    if local_dir is None and path.is_symlink() and path.is_relative_to(snapshots):
        blob = Path(os.path.realpath(path))
        for link in snapshots.rglob("*"):
            if link.is_symlink() and Path(os.path.realpath(link)) == blob:
                link.unlink(missing_ok=True)
        if blob.parent == Path(os.path.realpath(storage / "blobs")):
            blob.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _with_default_revision(ref: HubRef) -> HubRef:
    return replace(ref, revision=ref.revision or constants.DEFAULT_REVISION)


# --------------------------------------------------------------------------------------------------
# Errors: one line per failure, saying what to do


def _hub_error(exc: Exception, ref: HubRef, local_only: bool, name: str) -> ModelError:
    where, repo, e = str(ref), ref.repo_id, hub_errors
    token_hint = "set HF_TOKEN or run `hf auth login`"
    if isinstance(exc, e.GatedRepoError):
        return ModelError(
            f"{where}: {repo} is a gated repo: accept its conditions on the Hub and {token_hint}"
        )
    if isinstance(exc, e.RepositoryNotFoundError):
        return ModelError(
            f"{where}: repository {repo} not found on {constants.ENDPOINT} "
            f"(if it is private, {token_hint} with a token that can read it)"
        )
    if isinstance(exc, e.RevisionNotFoundError):
        return ModelError(f"{where}: revision {ref.revision!r} not found in {repo}")
    if isinstance(exc, (e.LocalEntryNotFoundError, e.OfflineModeIsEnabled)):  # before EntryNotFoundError
        if local_only:
            return ModelError(
                f"{where}: not in the local cache ({constants.HF_HUB_CACHE}) and offline mode is on; "
                "download it once with network access (`larsr download`)"
            )
        return ModelError(
            f"{where}: cannot reach the Hub at {constants.ENDPOINT} and the model is not in the local cache "
            f"({constants.HF_HUB_CACHE}); check the network or HF_ENDPOINT"
        )
    if isinstance(exc, e.EntryNotFoundError) and name == MANIFEST_NAME:
        return ModelError(
            f"{_with_default_revision(ref)}: not a larsr model (the repo has no {ref.manifest_path})"
        )
    if isinstance(exc, e.EntryNotFoundError):
        return ModelError(f"{where}: {name} named by the manifest is missing from the repo")
    if isinstance(exc, e.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return ModelError(f"{where}: the Hub refused access (HTTP {status}); check HF_TOKEN")
        return ModelError(f"{where}: the Hub answered HTTP {status} ({_first_line(exc)})")
    if isinstance(exc, e.HFValidationError):
        return ModelError(f"{where}: {_first_line(exc)}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return ModelError(f"{where}: network error talking to {constants.ENDPOINT}: {_first_line(exc)}")
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


def cached_models(cache_dir: Path | None = None, verify: bool = True) -> list[CachedModel]:
    """Every larsr model (a valid manifest.json at any depth) in every cached model repo revision."""
    try:
        info = scan_cache_dir(cache_dir)
    except hub_errors.CacheNotFound:
        return []
    found: list[CachedModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash)):
            refs = tuple(sorted(rev.refs))
            revision = "main" if "main" in refs else (refs[0] if refs else rev.commit_hash)
            snapshot = Path(rev.snapshot_path)
            for manifest_file in sorted(snapshot.rglob(MANIFEST_NAME)):
                try:
                    manifest = read_manifest_file(manifest_file, where=str(manifest_file))
                except ModelError:
                    continue  # some other library's manifest.json, or a broken one: not ours to list
                folder = manifest_file.parent
                sub = folder.relative_to(snapshot).as_posix()
                checks = verify_folder(folder, manifest, hashes=verify, report=True)
                ref = HubRef(repo.repo_id, "" if sub == "." else sub, revision)
                size, status = present_size(checks), folder_status(checks)
                found.append(CachedModel(ref, rev.commit_hash, refs, folder, manifest, size, status))
    return found
