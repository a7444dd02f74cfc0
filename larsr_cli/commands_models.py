"""``larsr download``, ``larsr models`` and ``larsr info``: getting and inspecting model folders.

The commands are plain click commands; the main ``larsr`` group (``larsr_cli.cli``) registers them
and its error handler turns a raised ``LarsrError`` into one line and exit status 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from .errors import LarsrError
from .integrity import folder_status, present_size, verify_folder
from .manifest import Manifest, read_manifest
from .registry import HF_PREFIX, embedded_models, resolve_model

if TYPE_CHECKING:
    from .hub import CachedModel, HubModel

# `.hub` (huggingface_hub) is imported inside the commands: registering them on the main group must
# not add the library's import time to every `larsr upscale`.


def _stdout() -> Console:
    # soft_wrap keeps long paths on one line, so scripts can read the last line as the folder.
    return Console(soft_wrap=True, highlight=False)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


# --------------------------------------------------------------------------------------------------
# download


@click.command("download")
@click.argument("repo")
@click.option(
    "--revision", "-r", help="Branch, tag or commit (default: main); may also be given as REPO@REV."
)
@click.option(
    "--local-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Put the files in this folder instead of the Hugging Face cache.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def download(repo: str, revision: str | None, local_dir: Path | None, quiet: bool) -> None:
    """Download a model from the Hugging Face Hub and verify it against its manifest.

    REPO is OWNER/NAME or hf://OWNER/NAME[/SUBFOLDER][@REVISION]. Only the files the manifest names
    are fetched; the last line printed is the model folder, usable as --model.
    """
    from .hub import download_model, parse_hub_ref

    ref = parse_hub_ref(repo, revision=revision)
    _print_download(download_model(ref, local_dir=local_dir, progress=not quiet))


def _print_download(model: HubModel) -> None:
    console = _stdout()
    commit = model.commit or "unknown commit"
    console.print(
        f"{model.manifest.name}: {model.ref} (commit {commit}), "
        f"{len(model.files)} files verified, {_human_size(model.size)}"
    )
    console.print(str(model.path))


# --------------------------------------------------------------------------------------------------
# models


def _embedded_rows(verify: bool) -> list[dict[str, Any]]:
    rows = []
    for name, folder in embedded_models().items():
        row: dict[str, Any] = {
            "reference": name,
            "source": "embedded",
            "revision": "",
            "commit": None,
            "path": str(folder),
        }
        try:
            manifest = read_manifest(folder)
        except LarsrError as exc:
            rows.append(
                {
                    "name": name,
                    **row,
                    "scale": None,
                    "precisions": [],
                    "size": None,
                    "status": f"broken: {exc}",
                }
            )
            continue
        checks = verify_folder(folder, manifest, hashes=verify, report=True)
        status, size = folder_status(checks), present_size(checks)
        rows.append(
            {
                "name": manifest.name,
                **row,
                "scale": manifest.scale,
                "precisions": manifest.precision_names,
                "size": size,
                "status": status,
            }
        )
    return rows


def _precisions_text(manifest: Manifest) -> str:
    """``fp32, int8 (coarse, condition, decoder)``: which precisions ``--precision`` can pick, and
    for a variant that covers only some graphs, which ones (the rest run in fp32)."""
    parts = []
    for name in manifest.precision_names:
        roles = manifest.precisions.get(name)
        if roles is None or len(roles) == len(manifest.graphs):
            parts.append(name)
        else:
            parts.append(f"{name} ({', '.join(roles)})")
    return ", ".join(parts)


def _hub_row(model: CachedModel) -> dict[str, Any]:
    return {
        "name": model.manifest.name,
        "reference": str(model.ref),
        "source": "hub",
        "revision": ", ".join(model.refs) or model.commit,
        "commit": model.commit,
        "scale": model.manifest.scale,
        "precisions": model.manifest.precision_names,
        "size": model.size,
        "status": model.status,
        "path": str(model.path),
    }


@click.command("models")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check every file's sha256.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models(verify: bool, as_json: bool) -> None:
    """List embedded models and larsr models in the Hugging Face cache."""
    from .hub import cached_models

    rows = _embedded_rows(verify) + [_hub_row(m) for m in cached_models(verify=verify)]
    for row in rows:
        row["verified"] = row["status"] == "verified"
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(
            "No models: none embedded, none in the Hugging Face cache (try `larsr download OWNER/REPO`)."
        )
        return
    table = Table(title="larsr models")
    for column in ("Model (--model)", "Name", "Revision", "Scale", "Precisions", "Size", "Verified"):
        table.add_column(column)
    for row in rows:
        revision = row["revision"]
        if row["commit"]:
            revision = (
                f"{revision} ({row['commit'][:12]})" if revision != row["commit"] else row["commit"][:12]
            )
        scale = f"x{row['scale']}" if row["scale"] else "?"
        verified = "yes" if row["verified"] else row["status"]
        precisions = ", ".join(row["precisions"]) or "?"
        table.add_row(
            row["reference"],
            row["name"],
            revision or "-",
            scale,
            precisions,
            _human_size(row["size"]),
            verified,
        )
    Console().print(table)


# --------------------------------------------------------------------------------------------------
# info


def _info_rows(manifest: Manifest) -> list[tuple[str, str]]:
    rf = ", ".join(f"{name} {radius}" for name, radius in manifest.receptive_field.items())
    rows = [("Name", manifest.name), ("Format version", str(manifest.format_version))]
    # Every manifest (format 1 is upgraded on read) names its architecture and a typed ``spec``.
    rows += [("Architecture", manifest.architecture), ("Scale", f"x{manifest.scale}")]
    spec = manifest.spec
    patch, codes = getattr(spec, "patch_size", None), getattr(spec, "codebook_size", None)
    if patch:
        rows.append(("Patch size", f"{patch} x {patch}"))
    if codes:
        rows.append(("Codebook size", str(codes)))
    rows += [
        ("Tile multiple", f"{manifest.tile_multiple} LR px"),
        ("Receptive field", f"{rf} LR px (context margin {manifest.context_margin})"),
        ("Default temperature", f"{manifest.default_temperature:g}"),
        ("Precisions", _precisions_text(manifest)),
        ("Licence", manifest.licence or "-"),
    ]
    extra = {
        "Training data": manifest.training_data,
        "LAR": getattr(manifest, "lar", None),
        "Spec": spec.to_json() if spec is not None else None,
        "Metrics": manifest.metrics,
    }
    rows += [(key, json.dumps(value, sort_keys=True)) for key, value in extra.items() if value]
    return rows


def _file_table(folder: Path, manifest: Manifest, verify: bool) -> Table:
    table = Table(show_edge=False)
    for column in ("File", "Size", "sha256", "State"):
        table.add_column(column)
    states = {"verified": "verified", "present": "present", "corrupt": "SHA256 MISMATCH"}
    for check in verify_folder(folder, manifest, hashes=verify, report=True):
        size = check.size if check.size is not None else manifest.files[check.name].get("bytes")
        state = states.get(check.state, "not downloaded")
        table.add_row(check.name, _human_size(size), check.expected[:16] + "...", state)
    return table


@click.command("info")
@click.argument("model")
@click.option("--verify", is_flag=True, help="Hash the model files present on disk against the manifest.")
def info(model: str, verify: bool) -> None:
    """Print the manifest summary of MODEL (embedded name, folder or hf://OWNER/REPO[@REV]).

    For a Hub model only manifest.json is fetched; the graphs are downloaded on first use.
    """
    source, commit = model, None
    if model.startswith(HF_PREFIX):
        from .hub import fetch_manifest, parse_hub_ref

        head = fetch_manifest(parse_hub_ref(model))
        folder, manifest, commit = head.path, head.manifest, head.commit
    else:
        folder = resolve_model(model)
        manifest = read_manifest(folder)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Model", source)
    table.add_row("Location", str(folder))
    if commit:
        table.add_row("Commit", commit)
    for key, value in _info_rows(manifest):
        table.add_row(key, value)
    console = _stdout()
    console.print(table)
    console.print(_file_table(folder, manifest, verify))
