"""Planning on the driver: the CLI's own job plan (with URI outputs), and the outputs that are
settled before any work is sent out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..engine import JobResult, RenderSettings
from ..errors import LarsrError
from ..jobs import STDIO, Job, NamingOptions, plan_jobs
from .cluster import import_ray
from .store import OutputStore, filesystem_of, is_uri, scheme_length


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
    filesystem_of(output)  # fail now on a URI pyarrow cannot open
    root = f"/larsr-uri-root-{uuid.uuid4().hex}"
    rest = output[scheme_length(output) :]
    jobs = plan_jobs(tuple(inputs), replace(naming, output=f"{root}/{rest.lstrip('/')}"))
    prefix = output[: scheme_length(output)] + ("/" if rest.startswith("/") else "")
    return [replace(job, target=prefix + Path(job.target).relative_to(root).as_posix()) for job in jobs]


def worker_model_ref(model: str, folder: Path) -> str:
    """What each worker resolves: a local folder by its absolute path (the workers' current
    folder is not ours), anything else (an embedded name, hf://) by name, so each node uses its
    own install or Hub cache."""
    expanded = Path(model).expanduser()
    if expanded.is_dir() and expanded.resolve() == Path(folder).resolve():
        return str(expanded.resolve())
    return model


def settle_existing(
    jobs: Sequence[Job], settings: RenderSettings, store: OutputStore
) -> dict[int, JobResult]:
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
