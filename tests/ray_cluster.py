"""A real two-node Ray cluster on this machine, for tests and benchmarks: started, then stopped.

``ray start --head`` and a second ``ray start --address`` node, 1 CPU each, with their own temp
folders and ports, so a run really spreads over two raylets the way it would over two machines.

Stopping never uses ``ray stop``: that kills every Ray process of the machine, other people's
included. Each ``ray start`` runs in a session of its own, and every process it leaves behind
(GCS, raylet, dashboard, agents, and the workers the raylet forks: they change their process
group but keep the session) stays in that session; stop() signals exactly those processes, by id.
(Not by an environment marker: Ray's setproctitle overwrites /proc/PID/environ of its agents.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_ports(count: int) -> list[int]:
    """Ports free now; held open together so the kernel hands out distinct ones."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_bin() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    if not found:
        raise RuntimeError("the `ray` command is not installed (pip install 'larsr[ray]')")
    return found


class LocalCluster:
    """Two Ray nodes on 127.0.0.1; ``address`` is what ``--ray`` and ``ray.init`` take."""

    def __init__(self, cpus_per_node: int = 1, object_store_bytes: int = 100_000_000) -> None:
        self.cpus = cpus_per_node
        self.store = object_store_bytes
        # Short: Ray puts AF_UNIX sockets under it, and those paths must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="lrc-", dir="/tmp"))
        self.sessions: set[int] = set()
        self.address = ""
        self.env = dict(os.environ)
        # Workers import larsr_cli from this checkout whether or not it is pip-installed.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.env.pop("RAY_ADDRESS", None)

    def _node_args(self, name: str) -> list[str]:
        """Options both nodes take; every port Ray would otherwise pick by a fixed default is
        a free one, so a second cluster on the machine (another test run) cannot collide."""
        manager, objects, agent_http, agent_grpc, runtime_env, metrics = _free_ports(6)
        return [
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.root / name}",
            f"--object-store-memory={self.store}",
            f"--node-manager-port={manager}",
            f"--object-manager-port={objects}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            "--disable-usage-stats",
        ]

    def _start_node(self, args: list[str], log: Path) -> None:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [_ray_bin(), "start", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its pid becomes the session id of all it starts
            )
            self.sessions.add(proc.pid)
            try:
                code = proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        if code != 0:
            raise RuntimeError(f"ray start failed ({code}); log: {log.read_text()[-3000:]}")

    def start(self) -> LocalCluster:
        gcs, dashboard = _free_ports(2)
        self.address = f"127.0.0.1:{gcs}"
        self.dashboard = f"http://127.0.0.1:{dashboard}"
        try:
            head = [
                "--head",
                f"--port={gcs}",
                "--include-dashboard=true",  # the state API (list_actors) is served there
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
            ]
            self._start_node([*head, *self._node_args("head")], self.root / "head.log")
            second = [f"--address={self.address}", *self._node_args("node2")]
            self._start_node(second, self.root / "node2.log")
            self._wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        """Until the GCS lists ``count`` live nodes (the second raylet registers asynchronously)."""
        probe = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-c", probe, self.address],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            seen = out.stdout.strip().splitlines()[-1:] and out.stdout.strip().splitlines()[-1]
            if seen.isdigit() and int(seen) >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not reach {count} live nodes (saw {seen!r})")

    def pids(self) -> list[int]:
        """Every live process of this cluster: the ones in the sessions our ``ray start``s made."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                stat = _stat(int(entry))
                if stat and stat[0] != "Z" and int(stat[3]) in self.sessions:
                    found.append(int(entry))
        return found

    def stop(self) -> None:
        """SIGTERM to each of our processes, SIGKILL to what is left after a grace period."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a killed daemon whose parent is init may linger as one)."""
    stat = _stat(pid)
    return bool(stat) and stat[0] != "Z"
