"""The batch engine: runs planned jobs through an ``Upscaler``, one image at a time.

One bad file never stops a batch: each job ends as done, skipped or failed (with its one-line
reason), and the caller decides the exit code from the summary. Outputs go through the atomic
writer of ``larsr_cli.images``, so an interrupted run leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageError, LarsrError, one_line
from .images import (
    AlphaFlattenedWarning,
    LoadedImage,
    MetadataDroppedWarning,
    encode_image,
    load_image,
    save_image,
)
from .jobs import STDIO, Job
from .pipeline import Upscaler

MAX_STDIN_BYTES = 1 << 30  # an image on a pipe is read whole; a runaway producer must not fill RAM
LOW_JPEG_QUALITY = 80  # below it JPEG blocking is visible at x4


@dataclass(frozen=True)
class RenderSettings:
    temperature: float | None = None
    texture: float | None = None
    scale: float = 4.0
    tile: int | str = "auto"
    format: str = "same"
    quality: int | None = None
    strip_metadata: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    debug: bool = False


@dataclass
class JobResult:
    job: Job
    status: str  # done | skipped | failed
    reason: str = ""
    seconds: float = 0.0
    output_size: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self, temperature: float, texture: float = 1.0) -> dict:
        out = {
            "input": self.job.display,
            "output": str(self.job.target),
            "status": self.status,
            "seed": self.job.seed,
            "temperature": temperature,
            "texture": texture,
            "seconds": round(self.seconds, 3),
        }
        if self.output_size:
            out["width"], out["height"] = self.output_size
        if self.reason:
            out["error" if self.status == "failed" else "reason"] = self.reason
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class Summary:
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def output_megapixels(self) -> float:
        return sum(w * h for r in self.results if r.output_size for w, h in [r.output_size]) / 1e6

    @property
    def seconds_per_megapixel(self) -> float | None:
        done = [r for r in self.results if r.status == "done"]
        mp = self.output_megapixels
        return sum(r.seconds for r in done) / mp if mp else None


def _read_source(job: Job, data: bytes | None = None) -> LoadedImage:
    """The job's image; ``data`` is its file's bytes when the caller already has them (a Ray
    Dataset row), decoded exactly as the file would be, metadata included."""
    if data is not None:
        return load_image(data, name=str(job.display))
    if job.source == STDIO:
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:  # closed or replaced standard input
            raise ImageError("<stdin>: standard input is closed")
        data = stdin.read(MAX_STDIN_BYTES + 1)
        if len(data) > MAX_STDIN_BYTES:
            raise ImageError(f"<stdin>: more than {MAX_STDIN_BYTES >> 20} MiB; pass a file path instead")
        return load_image(data, name="<stdin>")
    return load_image(job.source)


def write_stdout(data: bytes) -> None:
    """All of ``data`` to standard output, or a one-line error when the reader went away.

    A reader that closes early (``| head -c 10``) raises EPIPE; the job must then count as failed,
    not done, and the interpreter's final flush must not print a traceback, so stdout is pointed
    at /dev/null (what the Python docs advise for SIGPIPE-less programs). Bytes the OS already
    accepted into a pipe buffer before the reader left cannot be detected by any writer.
    """
    out = sys.stdout.buffer
    try:
        out.write(data)  # a blocking BufferedWriter writes it all or raises
        out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise ImageError("<stdout>: the reader closed the pipe before the whole image was written") from None


def output_dtype(image: LoadedImage) -> type:
    """Integers wherever the output file is integer: a 16K result is 805 MB as float32, 201 MB as uint8."""
    if image.mode == "F":
        return np.float32
    return np.uint16 if image.bit_depth >= 16 else np.uint8


def render(
    upscaler: Upscaler,
    image: LoadedImage,
    seed: int,
    settings: RenderSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The image's pixels at the requested scale, colour in the output file's dtype."""
    return upscaler.upscale_with_alpha(
        image.rgb,
        image.alpha,
        seed=seed,
        temperature=settings.temperature,
        texture=settings.texture,
        scale=settings.scale,
        tile=settings.tile,
        out_dtype=output_dtype(image),
        progress=progress,
    )


def run_job(
    upscaler: Upscaler,
    job: Job,
    settings: RenderSettings,
    progress: Callable[[int, int], None] | None = None,
    *,
    data: bytes | None = None,
) -> JobResult:
    start = time.perf_counter()
    target = job.target
    if target != STDIO and Path(target).exists():
        if settings.skip_existing:
            return JobResult(job, "skipped", "output exists")
        if not settings.overwrite:
            return JobResult(job, "failed", f"{target}: exists; use --overwrite or --skip-existing")
    try:
        image = _read_source(job, data)
        rgb, alpha = render(upscaler, image, job.seed, settings, progress)
        fmt = None if settings.format == "same" else settings.format
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AlphaFlattenedWarning)
            warnings.simplefilter("always", MetadataDroppedWarning)
            options: dict[str, Any] = dict(
                alpha=alpha,
                like=image,
                format=fmt,
                quality=settings.quality,
                strip_metadata=settings.strip_metadata,
            )
            if target == STDIO:
                write_stdout(encode_image(rgb, **options))
            else:
                save_image(target, rgb, overwrite=settings.overwrite, **options)
        reported = (AlphaFlattenedWarning, MetadataDroppedWarning)
        notes = [*image.notes, *(str(w.message) for w in caught if issubclass(w.category, reported))]
        if image.jpeg_quality is not None and image.jpeg_quality < LOW_JPEG_QUALITY:
            notes.append(
                f"a low-quality JPEG (about q{image.jpeg_quality}): larsr is trained on clean photos "
                "and sharpens its 8x8 blocking into hatched edges; a PNG or high-quality source works best"
            )
        return JobResult(
            job,
            "done",
            seconds=time.perf_counter() - start,
            output_size=(rgb.shape[1], rgb.shape[0]),
            warnings=notes,
        )
    except (LarsrError, ImageError) as exc:
        if settings.debug:
            traceback.print_exc()
        return JobResult(job, "failed", str(exc), time.perf_counter() - start)
    except MemoryError:
        return JobResult(job, "failed", "out of memory; try a smaller --tile", time.perf_counter() - start)
    except Exception as exc:  # a bug or an onnxruntime failure: keep the batch going, say what it was
        if settings.debug:
            traceback.print_exc()
        return JobResult(
            job,
            "failed",
            f"internal error: {type(exc).__name__}: {one_line(str(exc))}",
            time.perf_counter() - start,
        )
