"""The ``larsr`` command line: a thin layer of options over the batch engine and the Upscaler.

User mistakes (bad paths, bad images, missing models) end with one ``larsr: error: ...`` line and
exit code 1; ``--debug`` shows tracebacks. Ctrl-C exits 130 and leaves no partial output.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import __version__
from .commands_models import download, info, models
from .engine import JobResult, RenderSettings, Summary, run_job
from .errors import LarsrError, printable
from .help import DEFAULTS_MARK, SectionedCommand
from .images.formats import format_choices, lossy_formats, output_format
from .jobs import STDIO, NamingOptions, plan_jobs
from .precision import PRECISIONS

FORMATS = format_choices()
LOSSY = lossy_formats()


def _tile_option(value: str) -> int | str:
    if value == "auto":
        return "auto"
    try:
        tile = int(value)
    except ValueError:
        raise click.BadParameter(
            "expected auto, 0 (whole image) or a size in LR pixels", param_hint="--tile"
        ) from None
    if tile < 0:
        raise click.BadParameter("must be >= 0", param_hint="--tile")
    return tile


class LarsrGroup(click.Group):
    """Turns LarsrError into one line and a non-zero exit instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except LarsrError as exc:
            if debug:
                raise
            click.echo(f"larsr: error: {printable(str(exc))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", None)  # entry.Terminated: SIGTERM or SIGHUP
            what = "terminated" if signum else "interrupted"
            click.echo(f"larsr: {what}; no partial output was left behind", err=True)
            ctx.exit(128 + signum if signum else 130)


@click.group(cls=LarsrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="larsr")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Sharp, realistic x4 photo upscaling with LAR-SR (local autoregressive texture sampling)."""
    ctx.obj = {"debug": debug}


MAX_TEMPERATURE = 2.0  # beyond it the codes are near-uniform noise; -t 256 is usually a tile size
MAX_THREADS = 4 * (os.cpu_count() or 1)  # more only oversubscribes, and under a pids limit hangs
MAX_SAMPLES = 10_000  # each sample is a planned job; a typo like 100000000 must not eat the RAM
MAX_SEED = 2**63  # Philox keys are 64-bit; seeds SEED..SEED+N-1 must all fit


def _finite_temperature(value: float | None) -> float | None:
    """click's FloatRange lets nan through (every comparison with nan is false)."""
    if value is not None and value != value:
        raise click.BadParameter("must be a number, not nan", param_hint="'--temperature'")
    return value


@main.command(cls=SectionedCommand)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output file, folder, or - for stdout.")
@click.option("--scale", type=float, default=4.0, show_default=True, help="Output scale in [1, 4].")
@click.option(
    "--model",
    "-m",
    default="larsr-x4",
    show_default=True,
    help="Embedded name, model folder, or hf://OWNER/REPO[@REVISION].",
)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED - 1),
    default=0,
    show_default=True,
    help="Random seed of the texture; the same seed gives the same picture on any tiling or machine.",
)
@click.option(
    "--temperature",
    "-t",
    type=click.FloatRange(0.0, MAX_TEMPERATURE),
    default=None,
    callback=lambda ctx, param, value: _finite_temperature(value),
    help=f"Texture sampling temperature in [0, {MAX_TEMPERATURE:g}]; 0 = deterministic. "
    f"Default: the model's{DEFAULTS_MARK}. For tiles use --tile, not -t.",
)
@click.option(
    "--texture",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="How much drawn texture to add: 0 = the clean coarse result, 1 = full. Default: the model's.",
)
@click.option(
    "--samples",
    type=click.IntRange(1, MAX_SAMPLES),
    default=1,
    show_default=True,
    help="Write N variants with seeds SEED..SEED+N-1 (names stem_s{seed}.ext).",
)
@click.option(
    "--tile",
    default="auto",
    show_default=True,
    help="Tile size in LR pixels; 0 = whole image; auto: the grid with the least margin work in ~1 GB.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--threads",
    type=click.IntRange(1, MAX_THREADS),
    default=None,
    help=f"CPU threads, at most {MAX_THREADS} (default: all cores).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS, case_sensitive=False),
    default="auto",
    show_default=True,
    help="Graph precision: int8 needs a model that ships int8 graphs; auto = int8 when the model "
    "has them and the CPU has int8 dot-product units (VNNI/AMX), else fp32.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="same",
    show_default=True,
    help="Output format; same = the input's.",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=None,
    help="Quality for " + ", ".join(f"{f.name} (default {f.quality})" for f in LOSSY) + ".",
)
@click.option("--suffix", default="", help="Appended to output file stems in folder mode.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into subfolders (mirrored in the output).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True, help="Leave existing outputs alone and move on.")
@click.option("--strip-metadata", is_flag=True, help="Do not carry ICC profile, EXIF and dpi over.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="auto|local|HOST:PORT",
    help="Run the jobs on a Ray cluster (pip install 'larsr[ray]'): auto = the one started here "
    "with `ray start`, local = a throw-away one, or the head node's address. Same pixels as without.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 100_000),
    default=None,
    help="With --ray: model-holding actors (default: as many as the cluster's CPUs/--threads, or GPUs).",
)
@click.pass_context
def upscale(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: str,
    scale: float,
    model: str,
    seed: int,
    temperature: float | None,
    texture: float | None,
    samples: int,
    tile: str,
    device: str,
    threads: int | None,
    precision: str,
    fmt: str,
    quality: int | None,
    suffix: str,
    recursive: bool,
    overwrite: bool,
    skip_existing: bool,
    strip_metadata: bool,
    quiet: bool,
    as_json: bool,
    ray_address: str | None,
    workers: int | None,
) -> None:
    """Upscale images x4 (or by --scale) with LAR-SR."""
    if overwrite and skip_existing:
        raise LarsrError("--overwrite and --skip-existing contradict each other; pick one")
    if workers is not None and ray_address is None:
        raise LarsrError("--workers sizes a Ray actor pool; it needs --ray (auto, local or HOST:PORT)")
    if seed + samples > MAX_SEED:
        raise LarsrError(f"--seed {seed} with --samples {samples} runs past the largest seed {MAX_SEED - 1}")
    tile_value = _tile_option(tile)
    fmt = "same" if fmt.lower() == "same" else output_format(fmt).name  # jpeg -> jpg: one spelling
    naming = NamingOptions(output, fmt, suffix, seed, samples, recursive)
    if ray_address is not None:
        from .distributed import plan_cluster_jobs

        jobs = plan_cluster_jobs(inputs, naming)  # local inputs; -o may also be s3://... there
    else:
        jobs = plan_jobs(inputs, naming)
    to_stdout = output == STDIO
    if to_stdout and sys.stdout.isatty():
        raise LarsrError("-o - would print image bytes on the terminal; redirect it: -o - > out.png")
    err = Console(stderr=True, soft_wrap=True)  # a warning stays one line in logs, never wrapped at 80
    show = not quiet and err.is_terminal

    from .pipeline import Upscaler
    from .registry import resolve_model

    folder = resolve_model(model, progress=show)
    on_ray = ray_address is not None  # then this Upscaler only validates; the workers have theirs
    upscaler = Upscaler(
        folder,
        device="cpu" if on_ray else device,
        threads=1 if on_ray else threads,
        precision=precision,  # on Ray too: an int8 request on a model without int8 fails here, once
    )
    upscaler.check_scale(scale)  # once, not as one failure per image of the batch
    temperature_used = upscaler.resolve_temperature(temperature)
    texture_used = upscaler.resolve_texture(texture)
    settings = RenderSettings(
        temperature=temperature_used,
        texture=texture_used,
        scale=scale,
        tile=tile_value,
        format=fmt,
        quality=quality,
        strip_metadata=strip_metadata,
        overwrite=overwrite,
        skip_existing=skip_existing,
        debug=ctx.obj["debug"],
    )

    def finish(summary: Summary, device_label: str, precision_used: str) -> None:
        """The one report and exit code, whether the jobs ran here or on a cluster."""
        _report(
            summary,
            upscaler.manifest.name,
            device_label,
            precision_used,
            temperature_used,
            texture_used,
            quiet,
            as_json,
            to_stdout,
            err,
        )
        if summary.failed:
            ctx.exit(1)

    if on_ray:
        from .distributed import ClusterOptions, is_uri, progress_bar, run_jobs, worker_model_ref

        cluster = ClusterOptions(
            ray_address,
            workers,
            device,
            threads,
            debug=ctx.obj["debug"],
            quiet_ray=True,
            precision=precision.lower(),
        )
        with progress_bar(err, show) as on_progress:
            ray_summary = run_jobs(
                jobs,
                worker_model_ref(model, folder),
                settings,
                cluster,
                output_uri=output if is_uri(output) else None,
                progress=on_progress,
            )
        for note in ray_summary.notes:
            err.print(f"larsr: warning: {printable(note)}", markup=False, highlight=False)
        # Each worker resolves auto on its own device and CPU: the report says what they used.
        finish(ray_summary, ray_summary.device, ray_summary.precision or upscaler.precision)
        return
    summary = Summary()
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
        transient=False,
    ) as bar:
        overall = bar.add_task("images", total=len(jobs))
        # One unit per autoregressive step of every tile: a one-tile image moves too (#11).
        tiles = bar.add_task("  steps", total=1, visible=False)

        def on_tile(done: int, total: int) -> None:
            bar.update(tiles, completed=done, total=total, visible=total > 1)

        for job in jobs:
            name = escape(printable(Path(str(job.display)).name))
            bar.update(overall, description=f"images [dim]{name}[/]")
            bar.reset(tiles, total=1, visible=False)  # per-image ETA, not one spanning the batch
            result = run_job(upscaler, job, settings, on_tile)
            summary.results.append(result)
            bar.advance(overall)
    summary.seconds = time.perf_counter() - start
    finish(summary, upscaler.device.label, upscaler.precision)


def _report(
    summary: Summary,
    model: str,
    device: str,
    precision: str,
    temperature: float,
    texture: float,
    quiet: bool,
    as_json: bool,
    to_stdout: bool,
    err: Console,
) -> None:
    if as_json:
        report = {
            "model": model,
            "device": device,
            "precision": precision,
            "done": summary.count("done"),
            "skipped": summary.count("skipped"),
            "failed": summary.count("failed"),
            "seconds": round(summary.seconds, 3),
            "seconds_per_megapixel": summary.seconds_per_megapixel,
            "temperature": temperature,
            "texture": texture,
            "results": [r.to_json(temperature, texture) for r in summary.results],
        }
        stream = sys.stderr if to_stdout else sys.stdout
        stream.write(json.dumps(report, indent=2) + "\n")
        stream.flush()
    for r in summary.results:
        for note in r.warnings:
            err.print(f"larsr: warning: {printable(str(r.job.display))}: {printable(note)}", markup=False)
    for r in summary.failed:
        click.echo(f"larsr: error: {printable(_failure_line(r))}", err=True)
    if quiet or as_json:
        return
    spm = summary.seconds_per_megapixel
    speed = f", {spm:.2f} s per output megapixel" if spm else ""
    err.print(
        f"{summary.count('done')} done, {summary.count('skipped')} skipped, {summary.count('failed')} failed "
        f"in {summary.seconds:.1f} s{speed}",
        highlight=False,
    )


def _failure_line(result: JobResult) -> str:
    reason = result.reason
    return reason if reason.startswith(str(result.job.display)) else f"{result.job.display}: {reason}"


main.add_command(download)
main.add_command(models)
main.add_command(info)


if __name__ == "__main__":
    main()
