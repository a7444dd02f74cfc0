"""The Python entry point: ``larsr upscale ... --ray`` as one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine import RenderSettings
from ..errors import LarsrError
from ..jobs import NamingOptions
from .cluster import DEFAULT_TASK_RETRIES, ClusterOptions
from .plan import plan_cluster_jobs, worker_model_ref
from .run import ClusterSummary, ProgressFn, run_dataset, run_jobs
from .store import is_uri

if TYPE_CHECKING:  # ray is an optional extra: never imported at module level
    import ray.data


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
    from ..cli import MAX_SAMPLES, MAX_SEED
    from ..pipeline import Upscaler
    from ..registry import resolve_model

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
