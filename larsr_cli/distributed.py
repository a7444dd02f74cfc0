"""``larsr upscale`` over a Ray cluster: the same jobs and the same pixels, on a pool of actors.

Why Ray Data: it streams a list of work items through a pool of long-lived actors, each holding
one loaded model, and it restarts an actor whose process dies and retries the task it was running
(``max_restarts`` / ``max_task_retries``). That is exactly the shape of a batch upscale: loading
the four ONNX graphs costs more than a small image, so a model must outlive its images.

Why the pixels match the CLI: the driver plans the jobs with the CLI's own ``plan_jobs`` (same
names, same seeds per file, never per worker) and each actor runs the CLI's own ``run_job`` on its
share: same decoder, same ``Upscaler``, same atomic writer. The texture noise is keyed by seed and
position, so where a job runs cannot change its bytes.

Why a lost worker cannot leave a mess: outputs are written to a temporary name and renamed, so a
killed process leaves at most a hidden ``*.larsr-tmp-*`` file, which the driver deletes once the
run is over. A retried job whose output already appeared (the killed attempt got as far as the
rename) is rendered again and compared: identical bytes count as done, anything else is refused
exactly like the CLI refuses an existing output. Jobs whose output existed before the run are
decided on the driver, with the CLI's rules, before any work is sent out; so ``--skip-existing``
resumes a stopped run.

Ray is optional (``pip install 'larsr[ray]'``) and imported only here, only when asked for.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .atomic import TMP_MARKER, os_reason
from .engine import JobResult, RenderSettings, Summary, run_job
from .errors import ImageError, LarsrError, one_line
from .jobs import STDIO, Job, NamingOptions, _target_suffix, plan_jobs

if TYPE_CHECKING:  # ray is an optional extra: never imported at module level
    import ray.data

RAY_MIN_VERSION = (2, 50, 0)
"""The oldest Ray whose Ray Data API this module uses and whose test run passed (see README)."""

INSTALL_HINT = "pip install 'larsr[ray]'"
DEFAULT_TASK_RETRIES = 3
"""A job whose worker dies is run again this many times before it is reported as failed."""

MAX_BLOCKS = 100_000
"""One job per Ray Data block up to here: a lost worker then costs only the image it was on, and
progress moves image by image. Beyond it jobs share blocks (Ray's driver slows past ~1e5 blocks)."""

_INIT_MARK = "larsr-worker-init: "
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_NOISY_LOGGERS = ("ray", "ray.data", "ray.util", "ray._private")

ProgressFn = Callable[[int, "int | None", float], None]
"""``progress(done, total, images_per_second)``; total is None for a Dataset of unknown size."""


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


@dataclass
class ClusterSummary(Summary):
    """A ``Summary`` plus what the cluster run has to say about itself."""

    device: str = "ray"
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    # What the workers ran ("int8", "fp32", or "fp32, int8" on a mixed cluster); "" when none ran.
    precision: str = ""


# --------------------------------------------------------------------------------------------
# Ray: import and connect
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Outputs: a local (or mounted) folder, or a pyarrow filesystem URI
# --------------------------------------------------------------------------------------------


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def _scheme_len(uri: str) -> int:
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
            self._fs = _filesystem(self.uri or "")
        return self._fs

    def path(self, target: str) -> str:
        """The filesystem path pyarrow wants: the URI without ``scheme://``."""
        return target if self.local else target[_scheme_len(target) :]

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


def _filesystem(uri: str) -> Any:
    """pyarrow's filesystem for a URI, or one line naming what is wrong with it."""
    try:
        from pyarrow.fs import FileSystem

        fs, path = FileSystem.from_uri(uri)
    except ImportError:
        raise LarsrError(f"-o {uri}: URI outputs need pyarrow; install it with: {INSTALL_HINT}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for unknown schemes
        raise LarsrError(f"-o {uri}: not a filesystem URI pyarrow can open ({one_line(exc)})") from None
    if path.rstrip("/") != uri[_scheme_len(uri) :].rstrip("/"):
        raise LarsrError(
            f"-o {uri}: this kind of URI is not supported (use s3://, gs://, file:// or a mounted path)"
        )
    return fs


# --------------------------------------------------------------------------------------------
# Planning (on the driver)
# --------------------------------------------------------------------------------------------


def plan_cluster_jobs(inputs: Sequence[str], naming: NamingOptions) -> list[Job]:
    """``plan_jobs`` for a cluster: local inputs, outputs to a path or a filesystem URI.

    A URI output is planned as if it were a folder under a placeholder root that cannot clash
    with an input, so every naming rule of the CLI applies unchanged; targets become URIs again.
    """
    import_ray()  # before the model is resolved (maybe downloaded): fail first if Ray is missing
    if STDIO in inputs:
        raise LarsrError("--ray cannot read standard input (workers do not see it); pass files instead")
    if naming.output == STDIO:
        raise LarsrError("--ray writes files; -o - (stdout) works without --ray")
    if not is_uri(naming.output):
        return plan_jobs(tuple(inputs), naming)
    output = naming.output
    _filesystem(output)  # fail now on a URI pyarrow cannot open
    root = f"/larsr-uri-root-{uuid.uuid4().hex}"
    rest = output[_scheme_len(output) :]
    jobs = plan_jobs(tuple(inputs), replace(naming, output=f"{root}/{rest.lstrip('/')}"))
    prefix = output[: _scheme_len(output)] + ("/" if rest.startswith("/") else "")
    return [replace(job, target=prefix + Path(job.target).relative_to(root).as_posix()) for job in jobs]


def worker_model_ref(model: str, folder: Path) -> str:
    """What each worker resolves: a local folder by its absolute path (the workers' current
    folder is not ours), anything else (an embedded name, hf://) by name, so each node uses its
    own install or Hub cache."""
    expanded = Path(model).expanduser()
    if expanded.is_dir() and expanded.resolve() == Path(folder).resolve():
        return str(expanded.resolve())
    return model


def _precheck(jobs: Sequence[Job], settings: RenderSettings, store: OutputStore) -> dict[int, JobResult]:
    """Outputs that exist before any work: skipped or refused exactly as ``run_job`` would."""
    decided: dict[int, JobResult] = {}
    if settings.overwrite:
        return decided
    for i, job in enumerate(jobs):
        if store.exists(str(job.target)):
            if settings.skip_existing:
                decided[i] = JobResult(job, "skipped", "output exists")
            else:
                decided[i] = JobResult(
                    job, "failed", f"{job.target}: exists; use --overwrite or --skip-existing"
                )
    return decided


# --------------------------------------------------------------------------------------------
# The actor
# --------------------------------------------------------------------------------------------


class UpscaleWorker:
    """A Ray Data actor: one ``Upscaler`` per worker process, loaded once, used for every image.

    Each call gets a batch of planned jobs (columns index, source, target, seed, display) or of
    file bytes (columns bytes, path: a Dataset from ``ray.data.read_binary_files``) and returns
    one row per job: its index and its result as JSON. A bad image is a result, never an
    exception; only a model that cannot be loaded raises, because then every job would fail the
    same way and the run must stop with that one reason.
    """

    def __init__(
        self,
        model: str,
        device: str,
        threads: int,
        settings: RenderSettings,
        output_uri: str | None = None,
        naming: dict[str, Any] | None = None,
        precision: str = "auto",
    ) -> None:
        try:
            from .pipeline import Upscaler
            from .registry import resolve_model

            self.upscaler = Upscaler(
                resolve_model(model), device=device, threads=threads, precision=precision
            )
        except LarsrError as exc:
            raise RuntimeError(_INIT_MARK + str(exc)) from None
        self.settings = settings
        self.store = OutputStore(output_uri)
        self.naming = naming
        self.scratch = Path(tempfile.mkdtemp(prefix="larsr-ray-"))
        self.actor, self.worker, self.restarted = _incarnation()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        indexes: list[int] = []
        results: list[str] = []
        if "bytes" in batch:
            for path, data in zip(batch["path"], batch["bytes"], strict=True):
                for job in self._dataset_jobs(str(path)):
                    indexes.append(-1)
                    results.append(self._encode(self.run(job, bytes(data)), with_job=True))
        else:
            for i, src, target, seed, display in zip(
                batch["index"], batch["source"], batch["target"], batch["seed"], batch["display"], strict=True
            ):
                job = Job(Path(str(src)), str(target), int(seed), str(display))
                indexes.append(int(i))
                results.append(self._encode(self.run(job, None), with_job=False))
        return {"index": indexes, "result": results}

    def run(self, job: Job, data: bytes | None) -> JobResult:
        """One job with the CLI's rules; an output that is already there is compared, not trusted."""
        target = str(job.target)
        settings = self.settings
        exists = self.store.exists(target)
        if exists and settings.skip_existing:
            return JobResult(job, "skipped", "output exists")
        if exists and not settings.overwrite:
            return self._compare_with_existing(job, data)
        if self.store.local:
            return run_job(self.upscaler, replace(job, target=Path(target)), settings, data=data)
        result, scratch = self._render_scratch(job, data)
        try:
            if result.status == "done":
                self.store.put(scratch, target, overwrite=settings.overwrite)
        except (LarsrError, OSError) as exc:
            result = JobResult(job, "failed", one_line(exc), result.seconds)
        finally:
            scratch.unlink(missing_ok=True)
        return result

    def _render_scratch(self, job: Job, data: bytes | None) -> tuple[JobResult, Path]:
        """The job's output file, written by ``run_job`` into this worker's scratch folder."""
        scratch = self.scratch / f"{uuid.uuid4().hex}{PurePosixPath(str(job.target)).suffix}"
        settings = replace(self.settings, overwrite=True, skip_existing=False)
        result = run_job(self.upscaler, replace(job, target=scratch), settings, data=data)
        return replace(result, job=job), scratch

    def _compare_with_existing(self, job: Job, data: bytes | None) -> JobResult:
        """A retried job whose killed attempt already wrote its output: done if the bytes agree."""
        result, scratch = self._render_scratch(job, data)
        try:
            if result.status != "done":
                return result
            if self.store.read(str(job.target)) == scratch.read_bytes():
                return result
            return JobResult(job, "failed", f"{job.target}: exists; use --overwrite or --skip-existing")
        except OSError as exc:
            return JobResult(job, "failed", f"{job.target}: cannot read: {one_line(exc)}")
        finally:
            scratch.unlink(missing_ok=True)

    def _dataset_jobs(self, path: str) -> list[Job]:
        """A Dataset row's jobs, named like the CLI names files given one by one."""
        naming = self.naming or {}
        out = str(naming["output"]).rstrip("/")
        stem = PurePosixPath(path).stem
        ext = _target_suffix(path, naming["format"])
        seeds = range(naming["seed"], naming["seed"] + naming["samples"])
        jobs = []
        for seed in seeds:
            sample = f"_s{seed}" if naming["samples"] > 1 else ""
            jobs.append(Job(path, f"{out}/{stem}{naming['suffix']}{sample}{ext}", seed, path))
        return jobs

    def _encode(self, result: JobResult, *, with_job: bool) -> str:
        row: dict[str, Any] = {
            "status": result.status,
            "reason": result.reason,
            "seconds": result.seconds,
            "size": list(result.output_size) if result.output_size else None,
            "warnings": result.warnings,
            "actor": self.actor,
            "worker": self.worker,
            "restarted": self.restarted,
            "precision": self.upscaler.precision,
        }
        if with_job:
            job = result.job
            row.update(source=str(job.source), target=str(job.target), seed=job.seed, display=job.display)
        return json.dumps(row)


def _incarnation() -> tuple[str, str, bool]:
    """This actor's id, this process's name (node address and pid), and whether Ray restarted
    the actor after its process was lost (same actor id, new process)."""
    try:
        import ray

        context = ray.get_runtime_context()
        actor = str(context.get_actor_id() or "")
        with warnings.catch_warnings():  # it reads the deprecated actor_id inside (Ray 2.60)
            warnings.simplefilter("ignore")
            restarted = bool(context.was_current_actor_reconstructed)
        host = ray.util.get_node_ip_address()
    except Exception:  # not in an actor (direct use in tests or a notebook)
        actor, restarted, host = "", False, socket.gethostname()
    return actor, f"{host}:{os.getpid()}", restarted


def _decode(text: str, job: Job | None) -> tuple[JobResult, dict[str, Any]]:
    row = json.loads(text)
    if job is None:
        job = Job(row["source"], row["target"], int(row["seed"]), row["display"])
    size = tuple(row["size"]) if row.get("size") else None
    result = JobResult(job, row["status"], row["reason"], float(row["seconds"]), size, list(row["warnings"]))
    return result, row


# --------------------------------------------------------------------------------------------
# Running (on the driver)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pool:
    compute: Any
    resources: dict[str, Any]
    size: int
    threads: int
    label: str


def _pool(ray: Any, options: ClusterOptions, jobs: int | None, reading: bool = False) -> _Pool:
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
    return _Pool(compute, resources, wanted, threads, label)


@contextlib.contextmanager
def _data_context(ray: Any, errored_blocks: int) -> Iterator[None]:
    """Ray Data settings for this run only: our own progress, lost jobs as failures."""
    ctx = ray.data.DataContext.get_current()
    wanted = {
        "enable_progress_bars": False,
        "print_on_execution_start": False,
        "max_errored_blocks": errored_blocks,
    }
    saved = {name: getattr(ctx, name) for name in wanted if hasattr(ctx, name)}
    for name in saved:
        setattr(ctx, name, wanted[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


class _Drop(io.TextIOBase):
    """Where Ray's own prints to stdout go in the CLI: nowhere (``--json`` owns stdout)."""

    def write(self, text: str) -> int:
        return len(text)


_NATIVE_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")
"""How Ray's C++ core starts a log line: ``[2026-12-01 11:53:08,139 E 2164 2164] file.cc:12: ...``."""


@contextlib.contextmanager
def _native_log_filter() -> Iterator[None]:
    """Drop the log lines Ray's C++ core writes straight to file descriptor 2.

    They bypass Python (so no logger level silences them), and one is printed on every run
    ("constructor arguments in the object store and max_restarts > 0"). File descriptor 2 goes
    to a pipe whose other lines are passed on untouched; Python's own ``sys.stderr``, when it is
    that descriptor, writes to the real stream directly, so the progress bar and the one-line
    errors never wait in the pipe.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not _NATIVE_LOG_LINE.match(line):
                    os.write(original, line + b"\n")
        if pending and not _NATIVE_LOG_LINE.match(pending):
            os.write(original, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="larsr-ray-stderr", daemon=True)
    thread.start()
    swapped = None
    with contextlib.suppress(Exception):
        if sys.stderr.fileno() == 2:
            swapped = sys.stderr
            sys.stderr = io.TextIOWrapper(
                io.FileIO(original, "w", closefd=False),
                encoding=swapped.encoding,
                errors=swapped.errors,
                line_buffering=True,
                write_through=True,
            )
    try:
        yield
    finally:
        if swapped is not None:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            sys.stderr = swapped
        os.dup2(original, 2)  # closes the pipe's last write end here: the pump sees EOF
        thread.join(timeout=2)
        os.close(original)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Ray logs lost workers and its own retries as tracebacks on stderr, its C++ core writes log
    lines of its own, and raylet messages are printed on stdout; the CLI reports the outcome in
    one line instead (``--debug`` shows them all)."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with _native_log_filter(), contextlib.redirect_stdout(_Drop()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # Ray's tips and deprecations
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _failure_reason(exc: BaseException) -> str:
    text = str(exc)
    marked = text.find(_INIT_MARK)
    if marked >= 0:
        return "a Ray worker could not start: " + one_line(text[marked + len(_INIT_MARK) :])
    return f"the Ray run failed: {type(exc).__name__}: {one_line(exc)}"


def _map(ray: Any, ds: Any, pool: _Pool, options: ClusterOptions, kwargs: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        # Ray 2.60 calls max_restarts / max_task_retries "ray_remote_args" and deprecates passing
        # them, but names no replacement; without them a poisoned image would be retried forever.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return ds.map_batches(
            UpscaleWorker,
            fn_constructor_kwargs=kwargs,
            batch_size=1,
            compute=pool.compute,
            max_restarts=-1,
            max_task_retries=max(0, int(options.task_retries)),
            **pool.resources,
        )


def _stream(
    ray: Any,
    ds: Any,
    pool: _Pool,
    options: ClusterOptions,
    kwargs: dict[str, Any],
    on_row: Callable[[int, str], None],
    errored_blocks: int,
) -> None:
    with _data_context(ray, errored_blocks):
        try:
            for row in _map(ray, ds, pool, options, kwargs).iter_rows():
                on_row(int(row["index"]), str(row["result"]))
        except (KeyboardInterrupt, LarsrError):
            raise
        except Exception as exc:
            raise LarsrError(_failure_reason(exc)) from None


def _precision_used(rows: list[dict[str, Any]]) -> str:
    """The precisions the workers that answered actually ran, e.g. ``int8`` or ``fp32, int8``."""
    return ", ".join(sorted({str(row["precision"]) for row in rows if row.get("precision")}))


def _worker_notes(rows: list[dict[str, Any]], pool_size: int) -> list[str]:
    """One line when workers were lost: Ray restarted them (same actor, new process) or the pool
    replaced them (more processes answered than the pool has places)."""
    incarnations = {(row.get("actor"), row["worker"]) for row in rows}
    restarted = {(row.get("actor"), row["worker"]) for row in rows if row.get("restarted")}
    lost = max(len(incarnations) - pool_size, len(restarted), 0)
    if not lost:
        return []
    return [
        f"{lost} Ray worker{'s were' if lost > 1 else ' was'} lost and restarted; "
        "the images they held were run again"
    ]


def run_jobs(
    jobs: Sequence[Job],
    model: str,
    settings: RenderSettings,
    options: ClusterOptions,
    *,
    output_uri: str | None = None,
    progress: ProgressFn | None = None,
) -> ClusterSummary:
    """Run planned jobs (from ``plan_cluster_jobs``) on the cluster; the CLI's entry point.

    ``model`` is what each worker resolves (``worker_model_ref``). Jobs whose output exists are
    settled here first; the rest go to the actor pool, one per block, and come back as they
    finish. A job Ray gave up on after ``task_retries`` lost workers is a failure of its own.
    """
    ray = import_ray()
    store = OutputStore(output_uri)
    summary = ClusterSummary(device="ray")
    start = time.perf_counter()
    decided = _precheck(jobs, settings, store)
    todo = [i for i in range(len(jobs)) if i not in decided]
    results: dict[int, JobResult] = dict(decided)
    rows: list[dict[str, Any]] = []
    if progress:
        progress(len(decided), len(jobs), 0.0)
    if todo:
        with _quiet(options.quiet_ray and not options.debug):
            connected = connect(ray, options.address, debug=options.debug, quiet=options.quiet_ray)
            try:
                pool = _pool(ray, options, len(todo))
                summary.device, summary.workers = pool.label, pool.size
                items = [
                    {
                        "index": i,
                        "source": str(jobs[i].source),
                        "target": str(jobs[i].target),
                        "seed": int(jobs[i].seed),
                        "display": str(jobs[i].display),
                    }
                    for i in todo
                ]
                ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
                kwargs = {
                    "model": model,
                    "device": options.device,
                    "threads": pool.threads,
                    # the driver settled the outputs that existed; one that appears now is a retry's
                    "settings": replace(settings, skip_existing=False),
                    "output_uri": output_uri,
                    "precision": options.precision,
                }
                first = time.perf_counter()

                def on_row(index: int, text: str) -> None:
                    result, row = _decode(text, jobs[index])
                    results[index] = result
                    rows.append(row)
                    if progress:
                        rate = len(rows) / max(time.perf_counter() - first, 1e-9)
                        progress(len(results), len(jobs), rate)

                _stream(ray, ds, pool, options, kwargs, on_row, errored_blocks=len(items))
            finally:
                if connected:  # first: a worker still writing (Ctrl-C) is gone once this returns
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                store.sweep([str(job.target) for job in jobs])
    else:  # nothing to run; a killed earlier run may still have left temporary files
        store.sweep([str(job.target) for job in jobs])
    for i in todo:
        if i not in results:
            attempts = max(0, int(options.task_retries)) + 1
            results[i] = JobResult(
                jobs[i],
                "failed",
                f"its Ray worker died {attempts} times while upscaling it; not retried again",
            )
    summary.results = [results[i] for i in range(len(jobs))]
    summary.notes = _worker_notes(rows, summary.workers)
    summary.precision = _precision_used(rows)
    summary.seconds = time.perf_counter() - start
    return summary


def run_dataset(
    ds: ray.data.Dataset,
    output: str,
    model: str,
    settings: RenderSettings,
    naming: NamingOptions,
    options: ClusterOptions,
    *,
    progress: ProgressFn | None = None,
) -> ClusterSummary:
    """Run a Dataset of file bytes (columns ``bytes`` and ``path``) into the folder ``output``."""
    ray = import_ray()
    names = set(ds.schema().names)
    if not {"bytes", "path"} <= names:
        raise LarsrError(
            "the Dataset needs 'bytes' and 'path' columns, as "
            f"ray.data.read_binary_files(paths, include_paths=True) makes; it has {sorted(names)}"
        )
    uri = output if is_uri(output) else None
    if uri:
        _filesystem(uri)
    else:
        output = str(Path(output).expanduser().resolve())
    store = OutputStore(uri)
    summary = ClusterSummary(device="ray")
    start = time.perf_counter()
    results: list[JobResult] = []
    rows: list[dict[str, Any]] = []
    with _quiet(options.quiet_ray and not options.debug):
        connected = connect(ray, options.address, debug=options.debug, quiet=options.quiet_ray)
        try:
            pool = _pool(ray, options, None, reading=True)
            summary.device, summary.workers = pool.label, pool.size
            kwargs = {
                "model": model,
                "device": options.device,
                "threads": pool.threads,
                "settings": settings,
                "output_uri": uri,
                "precision": options.precision,
                "naming": {
                    "output": output,
                    "format": naming.format,
                    "suffix": naming.suffix,
                    "seed": naming.seed,
                    "samples": naming.samples,
                },
            }

            def on_row(_index: int, text: str) -> None:
                result, row = _decode(text, None)
                results.append(result)
                rows.append(row)
                if progress:
                    progress(len(results), None, len(results) / max(time.perf_counter() - start, 1e-9))

            _stream(
                ray, ds.select_columns(["bytes", "path"]), pool, options, kwargs, on_row, errored_blocks=0
            )
        finally:
            if connected:
                with contextlib.suppress(Exception):
                    ray.shutdown()
            store.sweep([str(r.job.target) for r in results])
    summary.results = sorted(results, key=lambda r: (str(r.job.display), r.job.seed))
    summary.notes = _worker_notes(rows, summary.workers)
    summary.precision = _precision_used(rows)
    summary.seconds = time.perf_counter() - start
    return summary


# --------------------------------------------------------------------------------------------
# The Python entry point
# --------------------------------------------------------------------------------------------


def upscale_on_ray(
    inputs: Sequence[str | os.PathLike[str]] | ray.data.Dataset,
    output: str | os.PathLike[str],
    *,
    address: str | None = None,
    workers: int | None = None,
    model: str = "larsr-x4",
    seed: int = 0,
    samples: int = 1,
    temperature: float | None = None,
    texture: float | None = None,
    scale: float = 4.0,
    tile: int | str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    precision: str = "auto",
    format: str = "same",
    quality: int | None = None,
    suffix: str = "",
    recursive: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    strip_metadata: bool = False,
    task_retries: int = DEFAULT_TASK_RETRIES,
    progress: ProgressFn | None = None,
) -> ClusterSummary:
    """``larsr upscale INPUTS -o OUTPUT --ray ADDRESS`` from Python; keywords mirror the options.

    ``inputs`` is a list of files, folders or globs (planned like the CLI), or a Ray Dataset of
    file bytes from ``ray.data.read_binary_files(paths, include_paths=True)`` (local or ``s3://``
    paths), whose outputs go flat into the folder ``output``, named ``stem[suffix][_sN].ext``.
    ``output`` may be a pyarrow filesystem URI (``s3://bucket/out/``). Returns the summary; bad
    images are failed results, never exceptions. Raises ``LarsrError`` (one line) for a bad option,
    a missing Ray or an unreachable cluster. ``address=None`` reuses this process's Ray connection.
    """
    from .cli import MAX_SAMPLES, MAX_SEED
    from .pipeline import Upscaler
    from .registry import resolve_model

    if overwrite and skip_existing:
        raise LarsrError("overwrite and skip_existing contradict each other; pick one")
    if not 1 <= samples <= MAX_SAMPLES:
        raise LarsrError(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
    if not 0 <= seed or seed + samples > MAX_SEED:
        raise LarsrError(f"seed {seed} with {samples} samples runs past the seed range [0, {MAX_SEED - 1}]")
    fmt = "jpg" if format.lower() == "jpeg" else format.lower()
    folder = resolve_model(model)
    # The driver only validates (no GPU needed); an int8 request on a model without int8 fails here.
    checker = Upscaler(folder, device="cpu", threads=1, precision=precision)
    checker.check_scale(scale)
    settings = RenderSettings(
        temperature=checker.resolve_temperature(temperature),
        texture=checker.resolve_texture(texture),
        scale=scale,
        tile=tile,
        format=fmt,
        quality=quality,
        strip_metadata=strip_metadata,
        overwrite=overwrite,
        skip_existing=skip_existing,
    )
    options = ClusterOptions(address, workers, device, threads, task_retries, precision=precision)
    ref = worker_model_ref(model, folder)
    out = os.fspath(output)
    naming = NamingOptions(out, fmt, suffix, seed, samples, recursive)
    if not isinstance(inputs, (list, tuple)):
        if not (hasattr(inputs, "map_batches") and hasattr(inputs, "schema")):  # a ray.data.Dataset
            raise LarsrError("inputs must be a list of paths or a Ray Dataset")
        if not (out.endswith("/") or Path(out).is_dir() or is_uri(out)) and Path(out).suffix:
            raise LarsrError(f"output {out} names a file; a Dataset is written into a folder")
        return run_dataset(inputs, out, ref, settings, naming, options, progress=progress)  # type: ignore[arg-type]
    jobs = plan_cluster_jobs([os.fspath(p) for p in inputs], naming)
    return run_jobs(jobs, ref, settings, options, output_uri=out if is_uri(out) else None, progress=progress)


# --------------------------------------------------------------------------------------------
# The CLI's side: progress on the driver's terminal
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(console: Any, show: bool) -> Iterator[ProgressFn | None]:
    """Images done / total and the cluster's rate, on the driver's stderr (a terminal only)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("images", total=None, rate="")

        def update(done: int, total: int | None, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=f"{rate:.2f} img/s" if rate else "")

        yield update
