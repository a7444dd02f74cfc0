"""Running planned jobs, or a Dataset of file bytes, on the actor pool, on the driver."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import JobResult, RenderSettings, Summary
from ..errors import LarsrError, one_line
from ..jobs import Job, NamingOptions
from .cluster import ActorPool, ClusterOptions, connect, import_ray, plan_pool
from .plan import settle_existing
from .quiet import quiet_ray_output
from .store import OutputStore, filesystem_of, is_uri
from .worker import INIT_FAILURE_MARK, UpscaleWorker, decode_result

if TYPE_CHECKING:  # ray is an optional extra: never imported at module level
    import ray.data

MAX_BLOCKS = 100_000
"""One job per Ray Data block up to here: a lost worker then costs only the image it was on, and
progress moves image by image. Beyond it jobs share blocks (Ray's driver slows past ~1e5 blocks)."""

ProgressFn = Callable[[int, "int | None", float], None]
"""``progress(done, total, images_per_second)``; total is None for a Dataset of unknown size."""


@dataclass
class ClusterSummary(Summary):
    """A ``Summary`` plus what the cluster run has to say about itself."""

    device: str = "ray"
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    # What the workers ran ("int8", "fp32", or "fp32, int8" on a mixed cluster); "" when none ran.
    precision: str = ""


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


def _failure_reason(exc: BaseException) -> str:
    text = str(exc)
    marked = text.find(INIT_FAILURE_MARK)
    if marked >= 0:
        return "a Ray worker could not start: " + one_line(text[marked + len(INIT_FAILURE_MARK) :])
    return f"the Ray run failed: {type(exc).__name__}: {one_line(exc)}"


def _map(ray: Any, ds: Any, pool: ActorPool, options: ClusterOptions, kwargs: dict[str, Any]) -> Any:
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
    pool: ActorPool,
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
    decided = settle_existing(jobs, settings, store)
    todo = [i for i in range(len(jobs)) if i not in decided]
    results: dict[int, JobResult] = dict(decided)
    rows: list[dict[str, Any]] = []
    if progress:
        progress(len(decided), len(jobs), 0.0)
    if todo:
        with quiet_ray_output(options.quiet_ray and not options.debug):
            connected = connect(ray, options.address, debug=options.debug, quiet=options.quiet_ray)
            try:
                pool = plan_pool(ray, options, len(todo))
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
                    result, row = decode_result(text, jobs[index])
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
        filesystem_of(uri)
    else:
        output = str(Path(output).expanduser().resolve())
    store = OutputStore(uri)
    summary = ClusterSummary(device="ray")
    start = time.perf_counter()
    results: list[JobResult] = []
    rows: list[dict[str, Any]] = []
    with quiet_ray_output(options.quiet_ray and not options.debug):
        connected = connect(ray, options.address, debug=options.debug, quiet=options.quiet_ray)
        try:
            pool = plan_pool(ray, options, None, reading=True)
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
                result, row = decode_result(text, None)
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
