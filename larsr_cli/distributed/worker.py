"""The Ray Data actor that upscales on a worker, and the JSON rows its results travel in."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
import warnings
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..engine import JobResult, RenderSettings, run_job
from ..errors import LarsrError, one_line
from ..jobs import Job, _target_suffix
from .store import OutputStore

INIT_FAILURE_MARK = "larsr-worker-init: "


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
            from ..pipeline import Upscaler
            from ..registry import resolve_model

            self.upscaler = Upscaler(
                resolve_model(model), device=device, threads=threads, precision=precision
            )
        except LarsrError as exc:
            raise RuntimeError(INIT_FAILURE_MARK + str(exc)) from None
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


def decode_result(text: str, job: Job | None) -> tuple[JobResult, dict[str, Any]]:
    row = json.loads(text)
    if job is None:
        job = Job(row["source"], row["target"], int(row["seed"]), row["display"])
    size = tuple(row["size"]) if row.get("size") else None
    result = JobResult(job, row["status"], row["reason"], float(row["seconds"]), size, list(row["warnings"]))
    return result, row
