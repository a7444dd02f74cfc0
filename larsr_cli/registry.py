"""Turn whatever the user passed as ``--model`` into a model folder on disk.

A reference is one of: the name of an embedded model (``larsr-x4``), a local folder holding
``manifest.json`` and the graphs, or ``hf://OWNER/REPO[/SUBFOLDER][@REVISION]``. Every entry point
(CLI options, the Python API) goes through :func:`resolve_model`, so all of them accept the same
three forms and fail with the same one-line errors.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError
from .manifest import MANIFEST_NAME

HF_PREFIX = "hf://"

_PACKAGE_DIR = Path(__file__).resolve().parent
# Where the wheel puts the repository's models/ folder (see pyproject's force-include).
EMBEDDED_DIR = _PACKAGE_DIR / "_embedded_models"


def _embedded_roots() -> list[Path]:
    """Folders that hold embedded models, installed copy first.

    A source checkout or an editable install has no ``_embedded_models``; the models are then
    read from ``<repo>/models`` next to the package, recognised by the pyproject.toml beside it.
    """
    roots = [EMBEDDED_DIR]
    repo = _PACKAGE_DIR.parent
    if (repo / "pyproject.toml").is_file():
        roots.append(repo / "models")
    return roots


def embedded_models() -> dict[str, Path]:
    """Name -> folder of every embedded model (a folder with a manifest.json), sorted by name."""
    found: dict[str, Path] = {}
    for root in _embedded_roots():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
                found.setdefault(folder.name, folder)
    return dict(sorted(found.items()))


def _looks_like_path(ref: str) -> bool:
    """A bare word is a model name; anything with a separator or a leading dot/tilde is a path."""
    return "/" in ref or "\\" in ref or ref.startswith((".", "~")) or Path(ref).is_absolute()


def resolve_model(ref: str, *, offline: bool | None = None, progress: bool = False) -> Path:
    """The folder of the model ``ref`` names, downloading and verifying it first for ``hf://``.

    ``offline=True`` never touches the network (only the HF cache); ``None`` follows
    ``HF_HUB_OFFLINE``. ``progress`` shows huggingface_hub's download bars on stderr, for CLI callers.
    """
    ref = ref.strip()
    if not ref:
        raise ModelError("empty model reference")
    if ref.startswith(HF_PREFIX):
        return _resolve_hub(ref, offline, progress)
    embedded = embedded_models()
    if not _looks_like_path(ref) and ref in embedded:
        return embedded[ref]
    folder = Path(ref).expanduser()
    if folder.is_dir():
        if not (folder / MANIFEST_NAME).is_file():
            raise ModelError(f"{ref}: not a larsr model folder (no {MANIFEST_NAME})")
        return folder
    raise ModelError(_unknown_message(ref, embedded))


def _resolve_hub(ref: str, offline: bool | None, progress: bool) -> Path:
    # huggingface_hub takes most of a second to import: only pay for it when a Hub model is asked for.
    from .hub import download_model, parse_hub_ref

    return download_model(parse_hub_ref(ref), offline=offline, progress=progress).path


def _unknown_message(ref: str, embedded: dict[str, Path]) -> str:
    names = ", ".join(embedded) or "none installed"
    owner, _, repo = ref.partition("/")
    looks_like_repo = bool(owner) and bool(repo) and "/" not in repo and not ref.startswith((".", "~"))
    hint = f"; for a Hub repo write hf://{ref}" if looks_like_repo else ""
    return (
        f"unknown model {ref!r}: not an embedded model ({names}), not a model folder, "
        f"not an hf://OWNER/REPO reference{hint}"
    )
