"""A local stand-in for the part of the Hugging Face Hub HTTP API that downloads use.

No network exists in the test environment, and mocking huggingface_hub would test our guesses about
it rather than the library itself. This server answers the requests ``hf_hub_download`` makes
(HEAD and GET on ``/resolve``, as huggingface_hub 1.x and 2.x send them) with the headers it relies
on (``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length``,
``X-Error-Code``), so the library runs its normal code paths against ``HF_ENDPOINT=hub.url``. It
records every request, with its User-Agent.

Import the ``hub_server`` fixture into a test module (no conftest needed)::

    from hub_server import FakeRepo, hub_server_fixture  # noqa: F401  (provides `hub_server`)
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

# Files with these suffixes are served as if stored with LFS (ETag is their sha256), like on the Hub.
LFS_SUFFIXES = (".onnx", ".bin", ".safetensors")


def commit_sha(label: str) -> str:
    """A deterministic 40-hex commit id, so tests can name commits."""
    return hashlib.sha1(label.encode()).hexdigest()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    """One model repo: ``commits`` maps commit sha -> {path: bytes}; ``refs`` maps branch/tag -> sha.

    ``private`` repos answer RepoNotFound (401 anonymous, 404 with a token of someone else) without
    one of ``tokens``; ``gated`` ones GatedRepo (401/403). A token no repo knows gets the Hub's
    "Invalid credentials" 401.
    """

    commits: dict[str, dict[str, bytes]]
    refs: dict[str, str] = field(default_factory=dict)
    private: bool = False
    gated: bool = False
    tokens: set[str] = field(default_factory=set)

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class FakeHub:
    """Threaded HTTP server over a dict of :class:`FakeRepo`; records every request it gets.

    ``tamper[(repo_id, path)] = bytes`` makes GET answer those bytes instead of the stored ones while
    every header still describes the stored file, as a corrupting proxy or disk would.
    """

    def __init__(self, repos: dict[str, FakeRepo] | None = None) -> None:
        self.repos: dict[str, FakeRepo] = dict(repos or {})
        self.tamper: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.user_agents: list[tuple[str, str]] = []  # (path, User-Agent) of every request
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down and close the socket, so later connections are refused (a dead network)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def add(self, repo_id: str, repo: FakeRepo) -> FakeRepo:
        self.repos[repo_id] = repo
        return repo

    def paths_requested(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [p for m, p in self.requests if method is None or m == method]

    # ---------------------------------------------------------------------------------------------
    # request routing

    def _record(self, method: str, path: str, user_agent: str) -> None:
        with self._lock:
            self.requests.append((method, path))
            self.user_agents.append((path, user_agent))

    def _repo(self, repo_id: str, auth: str | None) -> FakeRepo:
        repo = self.repos.get(repo_id)
        token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
        if token is not None and not any(token in r.tokens for r in self.repos.values()):
            raise _HubError(401, None, "Invalid credentials in Authorization header")
        if repo is None:
            # The real Hub answers 401 to anonymous callers so as not to reveal private repos.
            raise _HubError(404 if token else 401, "RepoNotFound", "Repository not found")
        if (repo.private or repo.gated) and token not in repo.tokens:
            if repo.gated:
                raise _HubError(403 if token else 401, "GatedRepo", "Access to this model is restricted.")
            raise _HubError(404 if token else 401, "RepoNotFound", "Repository not found")
        return repo

    def _commit(self, repo: FakeRepo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def resolve_file(
        self, repo_id: str, revision: str, path: str, auth: str | None
    ) -> tuple[str, bytes, bytes]:
        """(commit, stored bytes, bytes to send) for a /resolve request."""
        repo = self._repo(repo_id, auth)
        sha = self._commit(repo, revision)
        files = repo.commits[sha]
        if path not in files:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist at {sha}", commit=sha)
        data = files[path]
        return sha, data, self.tamper.get((repo_id, path), data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
                self._dispatch(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._dispatch(head=False)

            def _dispatch(self, head: bool) -> None:
                raw_path = urlsplit(self.path).path
                hub._record(self.command, raw_path, self.headers.get("user-agent", ""))
                auth = self.headers.get("authorization")
                segments = raw_path.strip("/").split("/")
                try:
                    if segments == ["api", "agent-harnesses"]:
                        # huggingface_hub 2.x fetches this registry (agent detection) once a day.
                        body = json.dumps({"harnesses": {}, "standardEnvVars": []}).encode()
                        self._send(200, body, {"Content-Type": "application/json"}, head)
                    elif len(segments) >= 5 and segments[2] == "resolve":
                        repo_id = "/".join(segments[:2])
                        revision = unquote(segments[3])
                        path = unquote("/".join(segments[4:]))
                        self._file(repo_id, revision, path, auth, head)
                    else:
                        raise _HubError(404, None, "Not found")
                except _HubError as err:
                    self._error(err, head)

            def _file(self, repo_id: str, revision: str, path: str, auth: str | None, head: bool) -> None:
                commit, stored, payload = hub.resolve_file(repo_id, revision, path, auth)
                headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
                if path.endswith(LFS_SUFFIXES):
                    digest = hashlib.sha256(stored).hexdigest()
                    headers.update(
                        {
                            "ETag": f'"{digest}"',
                            "X-Linked-Etag": f'"{digest}"',
                            "X-Linked-Size": str(len(stored)),
                        }
                    )
                else:
                    headers["ETag"] = f'"{git_blob_oid(stored)}"'
                self._send(200, payload, headers, head, length=len(stored) if head else len(payload))

            def _error(self, err: _HubError, head: bool) -> None:
                headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
                if err.code:
                    headers["X-Error-Code"] = err.code
                if err.commit:
                    headers["X-Repo-Commit"] = err.commit
                self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head)

            def _send(
                self, status: int, body: bytes, headers: dict, head: bool, length: int | None = None
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return Handler


@pytest.fixture(name="hub_server")
def hub_server_fixture():
    """A running :class:`FakeHub` with no repos; add them with ``hub_server.add(...)``."""
    hub = FakeHub().start()
    try:
        yield hub
    finally:
        hub.stop()
