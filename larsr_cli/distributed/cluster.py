"""Ray itself: the supported version, connecting to a cluster, and the pool of actors it can hold."""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass
from typing import Any

from ..atomic import os_reason
from ..errors import LarsrError, one_line

RAY_MIN_VERSION = (2, 50, 0)
"""The oldest Ray whose Ray Data API this module uses and whose test run passed (see README)."""

INSTALL_HINT = "pip install 'larsr[ray]'"
DEFAULT_TASK_RETRIES = 3
"""A job whose worker dies is run again this many times before it is reported as failed."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide to run.

    ``address``: ``auto`` (a cluster started on this machine with ``ray start``, or RAY_ADDRESS),
    ``local`` (start a throw-away Ray on this machine), or the head node's ``HOST:PORT``; None
    means the connection this process already has, else ``auto``. ``workers``: actor pool size
    (default: as many as the cluster's CPUs, or GPUs with ``--device cuda``, can hold).
    ``threads``: onnxruntime threads per actor and the CPUs each actor reserves (default 1, so
    Ray's packing and onnxruntime's threads agree). ``precision``: what each actor asks its
    ``Upscaler`` for; ``auto`` is resolved on the actor's own device and CPU.
    """

    address: str | None = None
    workers: int | None = None
    device: str = "cpu"
    threads: int | None = None
    task_retries: int = DEFAULT_TASK_RETRIES
    debug: bool = False
    quiet_ray: bool = False  # silence Ray's own log lines and prints (the CLI does)
    precision: str = "auto"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)[:3]
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def _floor() -> str:
    return ".".join(str(p) for p in RAY_MIN_VERSION)


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line saying how to get it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is a separate set of dependencies: pyarrow, pandas)
    except ImportError as exc:
        raise LarsrError(
            f"--ray needs Ray Data (ray >= {_floor()}), which cannot be imported here "
            f"({one_line(exc)}); install it with: {INSTALL_HINT}"
        ) from None
    if _version_tuple(getattr(ray, "__version__", "0")) < RAY_MIN_VERSION:
        raise LarsrError(
            f"--ray needs ray >= {_floor()}, this is ray {ray.__version__}; upgrade with: {INSTALL_HINT}"
        )
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, with a plain reason, where ray.init would retry for a minute."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise LarsrError(
            f"--ray {address}: expected auto, local or HOST:PORT (the address `ray start --head` prints)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=5):
            pass
    except OSError as exc:
        reason = os_reason(exc) if exc.strerror else one_line(exc) or "timed out"
        raise LarsrError(
            f"--ray {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` or check the address"
        ) from None


def connect(ray: Any, address: str | None, *, debug: bool = False, quiet: bool = False) -> bool:
    """Connect this process to a cluster; True when this call did it (so the caller disconnects)."""
    if ray.is_initialized():
        return False
    target = address or "auto"
    kwargs: dict[str, Any] = {"logging_level": logging.DEBUG if debug else logging.WARNING}
    if quiet:
        kwargs["log_to_driver"] = debug  # worker prints are noise; results carry what matters
    try:
        if target == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            if target != "auto" and not target.startswith("ray://"):
                _check_reachable(target)
            ray.init(address=target, **kwargs)
    except LarsrError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's own, untyped
        raise LarsrError(
            f"--ray {target}: cannot connect to a Ray cluster ({one_line(exc)}); "
            "start one with `ray start --head`, or use --ray local"
        ) from None
    return True


@dataclass(frozen=True)
class ActorPool:
    compute: Any
    resources: dict[str, Any]
    size: int
    threads: int
    label: str


def plan_pool(ray: Any, options: ClusterOptions, jobs: int | None, reading: bool = False) -> ActorPool:
    """The actor pool: as many actors as asked for (or as fit), each reserving what it uses.

    ``reading``: the input is a Dataset whose read tasks need CPUs of their own; actors holding
    every CPU would starve them and the run would wait forever, so one actor's worth stays free.
    """
    threads = int(options.threads or 1)
    gpu = options.device.strip().lower().startswith("cuda")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if gpu:
        capacity = sum(int(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
        if capacity < 1:
            raise LarsrError(
                f"--device {options.device}: the Ray cluster has no GPU (`ray status` lists its "
                "resources); use --device cpu"
            )
        resources: dict[str, Any] = {"num_gpus": 1}
    else:
        capacity = sum(int(n.get("Resources", {}).get("CPU", 0) // threads) for n in nodes)
        if capacity < 1:
            raise LarsrError(f"--threads {threads}: no node of the Ray cluster has {threads} CPUs to give")
        resources = {"num_cpus": threads}
    if reading and not gpu and capacity > 1:
        capacity -= 1
    wanted = options.workers or capacity
    if jobs is not None:
        wanted = max(1, min(wanted, jobs))
    if wanted <= capacity or reading:
        wanted = min(wanted, capacity) if reading else wanted
        compute = ray.data.ActorPoolStrategy(size=wanted, max_tasks_in_flight_per_actor=2)
    else:  # an autoscaling cluster may grow into it; start with what fits now
        compute = ray.data.ActorPoolStrategy(
            min_size=capacity, max_size=wanted, max_tasks_in_flight_per_actor=2
        )
    device = "cuda" if gpu else "cpu"
    plural = "s" if wanted != 1 else ""
    label = f"ray: {wanted} worker{plural} x {device}, {threads} thread{'s' if threads != 1 else ''} each"
    return ActorPool(compute, resources, wanted, threads, label)
