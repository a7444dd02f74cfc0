"""Hub support against a local fake Hub, with the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import; so every test that
talks to the (fake) Hub runs larsr in a fresh subprocess with its own environment, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import FakeRepo, commit_sha, hub_server_fixture  # noqa: F401  (provides `hub_server`)

from larsr_cli import __version__, registry
from larsr_cli.commands_models import info
from larsr_cli.errors import ModelError
from larsr_cli.hub import HubRef, parse_hub_ref
from larsr_cli.manifest import FORMAT_VERSION

REPO_ROOT = Path(__file__).resolve().parents[1]
C1, C2 = commit_sha("first"), commit_sha("second")
GRAPH_NAMES = ("coarse", "condition", "lar_step", "decoder")
REQUIRED_FILES = tuple(f"{name}.onnx" for name in GRAPH_NAMES)


# --------------------------------------------------------------------------------------------------
# helpers


def model_files(tag: str, prefix: str = "", version: int = 1) -> dict[str, bytes]:
    """A fake model: graph files are arbitrary bytes, the manifest holds their real sha256.

    The manifest is written as format-1 JSON, which every manifest reader accepts, so these tests
    do not depend on how the manifest module models it in memory.
    """
    graphs = {name: f"{tag}:{name}:".encode() * 40 for name in REQUIRED_FILES}
    manifest = {
        "format_version": version,
        "name": f"fake-{tag}",
        "scale": 4,
        "patch_size": 4,
        "codebook_size": 16,
        "tile_multiple": 8,
        # both the graph names and the stage names, whichever the manifest module requires
        "receptive_field": {name: 2 for name in (*GRAPH_NAMES, "lar")},
        "default_temperature": 0.8,
        "lar": {"layers": 2, "heads": 2, "features": 16, "index_stride": 2},
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in graphs.items()},
    }
    files = {prefix + name: data for name, data in graphs.items()}
    files[prefix + "manifest.json"] = json.dumps(manifest, indent=2).encode()
    files["README.md"] = b"# not needed by larsr\n"
    files["unused-big-file.bin"] = b"x" * 4096
    return files


def single_commit_repo(tag: str = "a", **kwargs) -> FakeRepo:
    return FakeRepo(commits={C1: model_files(tag)}, refs={"main": C1}, **kwargs)


def hub_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        COLUMNS="200",
    )
    env.update(extra)
    return env


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hf-home" / "hub"


def larsr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "larsr_cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


_DRIVER = """
import contextlib, io, json, sys
from larsr_cli.cli import main
from larsr_cli.errors import LarsrError
from larsr_cli.registry import resolve_model
out = []
for kind, *args in json.loads(sys.argv[1]):
    if kind == "resolve":
        try:
            out.append({"path": str(resolve_model(args[0], offline=args[1]))})
        except LarsrError as exc:
            out.append({"error": str(exc)})
        continue
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main.main(args=args, prog_name="larsr")
        except SystemExit as exc:
            rc = exc.code or 0
    out.append({"rc": rc, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
print(json.dumps(out))
"""


def batch(env: dict[str, str], *actions: tuple) -> list:
    """Run several actions in one fresh interpreter (one import of huggingface_hub, same env).

    ``("resolve", ref[, offline])`` -> {'path': ...} or {'error': ...};
    ``("cli", *argv)`` -> a CompletedProcess of the ``larsr`` command.
    """
    plan = [[a[0], a[1], a[2] if len(a) > 2 else None] if a[0] == "resolve" else list(a) for a in actions]
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(plan)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    results = []
    for action, result in zip(actions, json.loads(proc.stdout), strict=True):
        if action[0] == "cli":
            result = subprocess.CompletedProcess(action[1:], result["rc"], result["stdout"], result["stderr"])
        results.append(result)
    return results


def resolve(env: dict[str, str], *refs: str, offline: bool | None = None) -> list[dict]:
    """resolve_model() for each ref in turn, in one fresh interpreter."""
    return batch(env, *[("resolve", ref, offline) for ref in refs])


def cli(*argv: str) -> tuple:
    return ("cli", *argv)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, bars: bool = False) -> str:
    """Exit 1 and stderr is exactly one ``larsr: error:`` line (plus the progress bars if ``bars``)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("larsr: error:")]
    assert len(errors) == 1, proc.stderr
    if not bars:
        assert lines == errors, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def assert_model_folder(folder: Path, files: dict[str, bytes], prefix: str = "") -> None:
    for name in (*REQUIRED_FILES, "manifest.json"):
        assert (folder / name).read_bytes() == files[prefix + name], name


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------------------
# references and the registry (no Hub involved)


def test_parse_hub_references():
    assert parse_hub_ref("hf://owner/repo") == HubRef("owner/repo")
    assert parse_hub_ref("owner/repo", revision="v1") == HubRef("owner/repo", revision="v1")
    assert parse_hub_ref("hf://o/r/sub/folder@dev") == HubRef("o/r", "sub/folder", "dev")
    assert parse_hub_ref("hf://o/r@refs/pr/3") == HubRef("o/r", revision="refs/pr/3")
    assert str(HubRef("o/r", "sub", "v2")) == "hf://o/r/sub@v2"
    assert parse_hub_ref("hf://o/r@v1", revision="v1").revision == "v1"
    for bad in ("hf://repo-only", "hf://o/r@", "hf://o//r", "hf://o/r/../x", "hf://o/bad name"):
        with pytest.raises(ModelError):
            parse_hub_ref(bad)
    with pytest.raises(ModelError, match="contradicts"):
        parse_hub_ref("hf://o/r@v1", revision="v2")


def _write_model(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True)
    files = model_files(tag)
    for name in REQUIRED_FILES:
        (folder / name).write_bytes(files[name])
    (folder / "manifest.json").write_bytes(files["manifest.json"])
    return folder


def test_registry_embedded_local_and_unknown(tmp_path, monkeypatch):
    installed, checkout = tmp_path / "installed", tmp_path / "checkout"
    _write_model(installed / "larsr-x4", "installed")
    _write_model(checkout / "larsr-x4", "checkout")
    _write_model(checkout / "larsr-small", "small")
    (checkout / "not-a-model").mkdir()
    monkeypatch.setattr(registry, "_embedded_roots", lambda: [installed, checkout])

    assert registry.embedded_models() == {
        "larsr-small": checkout / "larsr-small",
        "larsr-x4": installed / "larsr-x4",  # the installed copy wins
    }
    assert registry.resolve_model("larsr-x4") == installed / "larsr-x4"
    local = _write_model(tmp_path / "mine", "mine")
    assert registry.resolve_model(str(local)) == local
    with pytest.raises(ModelError, match="no manifest.json"):
        registry.resolve_model(str(checkout / "not-a-model"))
    with pytest.raises(ModelError, match="larsr-small, larsr-x4"):
        registry.resolve_model("larsr-x9")
    with pytest.raises(ModelError, match="hf://someone/model"):
        registry.resolve_model("someone/model")


def test_info_on_a_local_folder(tmp_path):
    folder = _write_model(tmp_path / "m", "info")
    result = CliRunner().invoke(info, [str(folder), "--verify"])
    assert result.exit_code == 0, result.output
    assert "fake-info" in result.output and "x4" in result.output
    assert result.output.count("verified") == len(REQUIRED_FILES)


def test_info_shows_the_manifest_size_of_a_file_not_on_disk(tmp_path):
    """The exporter records sizes as "bytes"; info must read that key, not print "?"."""
    from larsr_cli.manifest import read_manifest

    folder = _write_model(tmp_path / "m", "info")
    (folder / "decoder.onnx").unlink()
    expected = read_manifest(folder).files["decoder.onnx"]["bytes"]
    result = CliRunner().invoke(info, [str(folder)])
    [row] = [line for line in result.output.splitlines() if "decoder.onnx" in line]
    assert "not downloaded" in row and f"{expected} B" in row and "?" not in row


def test_info_reports_a_corrupt_local_file(tmp_path):
    folder = _write_model(tmp_path / "m", "info")
    (folder / "decoder.onnx").write_bytes(b"tampered")
    result = CliRunner().invoke(info, [str(folder), "--verify"])
    assert result.exit_code == 0
    assert "SHA256 MISMATCH" in result.output


# --------------------------------------------------------------------------------------------------
# downloads through huggingface_hub against the fake Hub


def test_first_download_then_cached_with_server_stopped(tmp_path, hub_server):
    repo = hub_server.add("owner/model", single_commit_repo("a"))
    env = hub_env(tmp_path, hub_server.url)

    proc = larsr(env, "download", "owner/model")
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder == cache_dir(tmp_path) / "models--owner--model" / "snapshots" / C1
    assert C1 in proc.stdout and "4 files verified" in proc.stdout
    assert_model_folder(folder, repo.commits[C1])
    # only what the manifest names was fetched: no README, no unrelated big file
    assert sorted(p.name for p in folder.iterdir()) == sorted([*REQUIRED_FILES, "manifest.json"])
    assert not any("unused-big-file" in p for p in hub_server.paths_requested())

    hub_server.stop()
    resolved, listing, shown = batch(
        env, ("resolve", "hf://owner/model"), cli("models", "--json"), cli("info", "hf://owner/model")
    )
    assert resolved == {"path": str(folder)}
    [row] = [r for r in json.loads(listing.stdout) if r["source"] == "hub"]
    assert row["reference"] == "hf://owner/model@main" and row["commit"] == C1
    assert row["verified"] and row["scale"] == 4 and row["path"] == str(folder)
    assert shown.returncode == 0, shown.stderr
    assert "fake-a" in shown.stdout and C1 in shown.stdout


def test_download_carries_the_int8_graphs_and_models_lists_them(tmp_path, hub_server):
    """A model's int8 variant is part of its files: fetched, verified, and listed as a precision."""
    from larsr_cli.manifest import parse_manifest

    files = model_files("q")
    data = parse_manifest(json.loads(files["manifest.json"])).to_json()
    int8 = b"int8 coarse graph" * 30
    data["precisions"] = {
        "int8": {"coarse": {"file": "coarse.int8.onnx", "sha256": hashlib.sha256(int8).hexdigest()}}
    }
    files["manifest.json"], files["coarse.int8.onnx"] = json.dumps(data).encode(), int8
    hub_server.add("owner/model", FakeRepo(commits={C1: files}, refs={"main": C1}))
    env = hub_env(tmp_path, hub_server.url)

    proc = larsr(env, "download", "owner/model")
    assert proc.returncode == 0, proc.stderr
    assert "5 files verified" in proc.stdout
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "coarse.int8.onnx").read_bytes() == int8
    listing, shown = batch(env, cli("models", "--json"), cli("info", str(folder), "--verify"))
    [row] = [r for r in json.loads(listing.stdout) if r["source"] == "hub"]
    assert row["precisions"] == ["fp32", "int8"] and row["verified"]
    assert "fp32, int8 (coarse)" in shown.stdout


def test_offline_mode_uses_the_cache_and_never_the_network(tmp_path, hub_server):
    hub_server.add("owner/model", single_commit_repo("a"))
    env = hub_env(tmp_path, hub_server.url)
    assert larsr(env, "download", "hf://owner/model").returncode == 0
    seen = len(hub_server.requests)

    cached, missing, refused = batch(
        dict(env, HF_HUB_OFFLINE="1"),
        ("resolve", "hf://owner/model"),
        ("resolve", "hf://owner/other"),
        cli("download", "owner/other"),
    )
    assert Path(cached["path"]).name == C1
    assert "offline mode is on" in missing["error"]
    assert_one_line_error(refused, "hf://owner/other", "offline mode is on")
    # offline=True in the API does the same without the environment variable
    cached_api, missing_api = resolve(env, "hf://owner/model", "hf://owner/other", offline=True)
    assert cached_api == cached and "offline mode is on" in missing_api["error"]
    assert len(hub_server.requests) == seen, hub_server.requests[seen:]


def test_revision_pinning(tmp_path, hub_server):
    first, second = model_files("v1"), model_files("v2")
    hub_server.add("owner/model", FakeRepo(commits={C1: first, C2: second}, refs={"main": C2, "v1": C1}))
    env = hub_env(tmp_path, hub_server.url)

    by_option = larsr(env, "download", "owner/model", "--revision", "v1")
    assert by_option.returncode == 0, by_option.stderr
    v1_folder = Path(by_option.stdout.strip().splitlines()[-1])
    assert v1_folder.name == C1
    assert_model_folder(v1_folder, first)

    main, pinned = resolve(env, "hf://owner/model", f"hf://owner/model@{C1}")
    assert Path(main["path"]).name == C2 and pinned == {"path": str(v1_folder)}
    assert_model_folder(Path(main["path"]), second)

    hub_server.stop()  # both revisions stay usable, each with its own content
    main_off, v1_off, listing = batch(
        env, ("resolve", "hf://owner/model"), ("resolve", "hf://owner/model@v1"), cli("models", "--json")
    )
    assert main_off == main and v1_off == {"path": str(v1_folder)}
    assert sorted((r["name"], r["commit"]) for r in json.loads(listing.stdout) if r["source"] == "hub") == [
        ("fake-v1", C1),
        ("fake-v2", C2),
    ]


def test_corrupted_download_is_rejected_and_removed(tmp_path, hub_server):
    repo = hub_server.add("owner/model", single_commit_repo("a"))
    good = repo.commits[C1]["coarse.onnx"]
    bad = bytes(b ^ 0x20 for b in good)  # same size, so only a hash check can tell
    hub_server.tamper[("owner/model", "coarse.onnx")] = bad
    env = hub_env(tmp_path, hub_server.url)

    # the CLI download, then what `upscale --model hf://...` does: both refuse the file
    proc, refused = batch(env, cli("download", "owner/model"), ("resolve", "hf://owner/model"))
    assert_one_line_error(proc, "coarse.onnx", "failed verification", "deleted", bars=True)
    assert "failed verification" in refused["error"]
    snapshot = cache_dir(tmp_path) / "models--owner--model" / "snapshots" / C1
    assert not (snapshot / "coarse.onnx").exists() and not (snapshot / "coarse.onnx").is_symlink()
    blobs = (cache_dir(tmp_path) / "models--owner--model" / "blobs").iterdir()
    assert all(blob.read_bytes() != bad for blob in blobs)

    del hub_server.tamper[("owner/model", "coarse.onnx")]
    retry = larsr(env, "download", "owner/model")
    assert retry.returncode == 0, retry.stderr
    assert (snapshot / "coarse.onnx").read_bytes() == good


def test_repo_publishing_a_wrong_file_is_rejected(tmp_path, hub_server):
    files = model_files("a")
    files["decoder.onnx"] = b"not the decoder the manifest describes"
    hub_server.add("owner/model", FakeRepo(commits={C1: files}, refs={"main": C1}))
    proc = larsr(hub_env(tmp_path, hub_server.url), "download", "owner/model")
    assert_one_line_error(proc, "decoder.onnx", "failed verification", bars=True)
    assert not (cache_dir(tmp_path) / "models--owner--model" / "snapshots" / C1 / "decoder.onnx").exists()


def test_hub_failures_are_one_line_errors(tmp_path, hub_server):
    hub_server.add("owner/model", single_commit_repo("a"))
    hub_server.add("owner/private", single_commit_repo("p", private=True, tokens={"hf_good"}))
    hub_server.add("owner/gated", single_commit_repo("g", gated=True, tokens={"hf_good"}))
    hub_server.add("owner/notlarsr", FakeRepo(commits={C1: {"config.json": b"{}"}}, refs={"main": C1}))
    future = model_files("future", version=FORMAT_VERSION + 1)
    hub_server.add("owner/future", FakeRepo(commits={C1: future}, refs={"main": C1}))
    env = hub_env(tmp_path, hub_server.url)

    missing_repo, missing_rev, missing_sha, private, gated, not_larsr, newer = batch(
        env,
        cli("download", "owner/nothere"),
        cli("download", "owner/model", "--revision", "v9"),
        cli("download", f"hf://owner/model@{C2}"),
        cli("download", "owner/private"),
        cli("download", "owner/gated"),
        cli("download", "owner/notlarsr"),
        cli("download", "owner/future"),
    )
    assert_one_line_error(missing_repo, "owner/nothere", "not found")
    assert_one_line_error(missing_rev, "revision 'v9' not found")
    assert_one_line_error(missing_sha, f"revision '{C2}' not found")
    assert_one_line_error(private, "owner/private", "HF_TOKEN")
    assert_one_line_error(gated, "gated", "HF_TOKEN")
    assert_one_line_error(not_larsr, "not a larsr model", "manifest.json")
    assert_one_line_error(newer, "format_version")
    # nothing half-downloaded: no graph of a refused model reached the cache
    assert not list(cache_dir(tmp_path).glob("models--*/snapshots/*/*.onnx"))


def test_private_and_gated_repos_work_with_a_token(tmp_path, hub_server):
    hub_server.add("owner/private", single_commit_repo("p", private=True, tokens={"hf_good"}))
    hub_server.add("owner/gated", single_commit_repo("g", gated=True, tokens={"hf_good"}))
    hub_server.add("someone/else", single_commit_repo("e", private=True, tokens={"hf_someone"}))
    good = hub_env(tmp_path, hub_server.url, HF_TOKEN="hf_good")
    assert [Path(r["path"]).name for r in resolve(good, "hf://owner/private", "hf://owner/gated")] == [C1, C1]

    # a valid token without access to these repos, then a token the Hub does not know
    other = hub_env(tmp_path / "other", hub_server.url, HF_TOKEN="hf_someone")
    private, gated = batch(other, cli("download", "owner/private"), cli("download", "owner/gated"))
    assert_one_line_error(private, "owner/private", "not found", "HF_TOKEN")
    assert_one_line_error(gated, "gated", "HF_TOKEN")
    invalid = larsr(
        hub_env(tmp_path / "invalid", hub_server.url, HF_TOKEN="hf_typo"), "download", "owner/private"
    )
    assert_one_line_error(invalid, "refused access", "HF_TOKEN")


def test_unreachable_hub_and_nothing_cached(tmp_path):
    proc = larsr(hub_env(tmp_path, closed_port_url()), "download", "owner/model")
    assert_one_line_error(proc, "cannot reach the Hub", "not in the local cache")


def test_every_request_names_larsr_in_the_user_agent(tmp_path, hub_server):
    """library_name/library_version reach the Hub, as they do for other libraries built on it."""
    hub_server.add("owner/model", single_commit_repo("a"))
    assert larsr(hub_env(tmp_path, hub_server.url), "download", "owner/model").returncode == 0
    downloads = [(path, agent) for path, agent in hub_server.user_agents if "/resolve/" in path]
    assert len(downloads) >= 1 + len(REQUIRED_FILES)
    assert all(f"larsr/{__version__}" in agent for _, agent in downloads), downloads


def test_progress_bars_are_the_librarys_and_quiet_hides_them(tmp_path, hub_server):
    hub_server.add("owner/model", single_commit_repo("a"))
    forced = {"TQDM_POSITION": "-1"}  # huggingface_hub then shows its bars on a pipe too
    shown = larsr(hub_env(tmp_path / "a", hub_server.url, **forced), "download", "owner/model")
    quiet = larsr(hub_env(tmp_path / "b", hub_server.url, **forced), "download", "-q", "owner/model")
    assert shown.returncode == quiet.returncode == 0, (shown.stderr, quiet.stderr)
    assert "coarse.onnx" in shown.stderr and "100%" in shown.stderr
    assert quiet.stderr.strip() == ""
    assert shown.stdout.splitlines()[-1].startswith(str(tmp_path / "a"))


def test_local_dir_download(tmp_path, hub_server):
    repo = hub_server.add("owner/model", single_commit_repo("a"))
    env = hub_env(tmp_path, hub_server.url)
    target = tmp_path / "my-model"
    proc = larsr(env, "download", "owner/model", "--local-dir", str(target))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip().splitlines()[-1]) == target
    assert C1 in proc.stdout
    assert_model_folder(target, repo.commits[C1])
    assert not (target / "README.md").exists()
    # huggingface_hub records refs/main in the cache even for a local dir, but stores no file there
    assert not list(cache_dir(tmp_path).glob("models--owner--model/*/*/*.onnx"))
    assert registry.resolve_model(str(target)) == target

    hub_server.stop()  # a complete local dir needs no network
    again = larsr(env, "download", "owner/model", "--local-dir", str(target))
    assert again.returncode == 0, again.stderr


def test_subfolder_reference(tmp_path, hub_server):
    files = model_files("sub", prefix="weights/x4/")
    hub_server.add("owner/collection", FakeRepo(commits={C1: files}, refs={"main": C1, "v1": C1}))
    env = hub_env(tmp_path, hub_server.url)
    result, listing = batch(env, ("resolve", "hf://owner/collection/weights/x4@v1"), cli("models", "--json"))
    folder = Path(result["path"])
    assert folder == cache_dir(tmp_path) / "models--owner--collection" / "snapshots" / C1 / "weights" / "x4"
    assert_model_folder(folder, files, prefix="weights/x4/")
    [row] = [r for r in json.loads(listing.stdout) if r["source"] == "hub"]
    assert row["reference"] == "hf://owner/collection/weights/x4@v1" and row["verified"]


# --------------------------------------------------------------------------------------------------
# malformed manifests: one line naming the key, never a traceback or "internal error"


def _set(*keys: str, value: object = None, delete: bool = False):
    def mutate(data: dict) -> None:
        for key in keys[:-1]:
            data = data[key]
        if delete:
            del data[keys[-1]]
        else:
            data[keys[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (_set("scale", value="four"), "scale"),
        (_set("scale", value=0), "scale"),
        (_set("patch_size", value=1e400), "patch_size"),
        (_set("tile_multiple", value=0), "tile_multiple"),
        (_set("lar", "heads", value=0), "lar.heads"),
        (_set("lar", delete=True), "lar.layers"),
        (_set("default_temperature", value=float("nan")), "default_temperature"),
        (_set("files", "decoder.onnx", value="not-a-dict"), "files"),
        (_set("files", "decoder.onnx", "sha256", value=12345), "sha256"),
        (_set("files", "../secret.txt", value={"sha256": "0" * 64}), "plain file name"),
        (_set("files", "/etc/hostname", value={"sha256": "0" * 64}), "plain file name"),
    ],
)
def test_malformed_manifest_is_one_line(tmp_path, mutate, needle):
    from larsr_cli.cli import main

    folder = _write_model(tmp_path / "m", "bad")
    data = json.loads((folder / "manifest.json").read_text())
    mutate(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["info", str(folder), "--verify"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("larsr: error:")]
    assert needle in line, line


def test_deeply_nested_manifest_is_one_line(tmp_path):
    from larsr_cli.cli import main

    folder = _write_model(tmp_path / "m", "deep")
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(main, ["info", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not a larsr model" in result.output


def test_failed_verification_never_deletes_outside_the_cache(tmp_path, hub_server):
    """A crafted snapshot link to a user's file: verification fails, the link goes, the file stays."""
    hub_server.add("owner/model", single_commit_repo("a"))
    env = hub_env(tmp_path, hub_server.url)
    assert larsr(env, "download", "owner/model").returncode == 0
    snapshot = cache_dir(tmp_path) / "models--owner--model" / "snapshots" / C1
    precious = tmp_path / "my-thesis.txt"
    precious.write_text("years of work")
    (snapshot / "decoder.onnx").unlink()
    (snapshot / "decoder.onnx").symlink_to(precious)
    hub_server.stop()
    [refused] = batch(dict(env, HF_HUB_OFFLINE="1"), ("resolve", "hf://owner/model"))
    assert "failed verification" in refused["error"]
    assert precious.read_text() == "years of work"
    assert not (snapshot / "decoder.onnx").is_symlink()
