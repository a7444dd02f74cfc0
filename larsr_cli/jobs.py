"""Turning the command line's inputs and ``-o`` into a list of (source, destination) jobs.

Inputs may be files, folders (mirrored into the output folder, recursively with ``--recursive``),
glob patterns, or ``-`` for stdin. The plan is made up front, so a typo fails before any work and
the progress bar knows the total.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import LarsrError
from .images.formats import IMAGE_SUFFIXES, output_format, output_suffix, resolve_format, suffix_list

STDIO = "-"


@dataclass(frozen=True)
class Job:
    source: Path | str  # a path, or "-" for stdin
    target: Path | str  # a path, or "-" for stdout
    seed: int
    display: str  # what the progress bar and the summary call this job


@dataclass(frozen=True)
class NamingOptions:
    output: str
    format: str  # a name from images.formats.format_choices(): "same" or e.g. png
    suffix: str
    seed: int
    samples: int
    recursive: bool


def _target_suffix(source: Path | str, fmt: str) -> str:
    if fmt != "same":
        return output_format(fmt).suffix
    return output_suffix(Path(source).suffix) if source != STDIO else ".png"


def _check_file_target(path: Path, fmt: str) -> None:
    """Fail before any work if ``-o FILE`` cannot be written (.gif) or contradicts ``--format``."""
    by_suffix = resolve_format(path=path)
    if fmt != "same" and resolve_format(fmt) != by_suffix:
        raise LarsrError(f"-o {path}: the suffix says {by_suffix} but --format says {fmt}; make them agree")


def _expand(inputs: tuple[str, ...], recursive: bool) -> list[tuple[Path | str, Path | None]]:
    """(source, path relative to the output folder's root or None for a plain file)."""
    found: list[tuple[Path | str, Path | None]] = []
    for raw in inputs:
        if raw == STDIO:
            found.append((STDIO, None))
            continue
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                hint = "" if recursive else " (use --recursive for subfolders)"
                raise LarsrError(f"{raw}: folder holds no images{hint}")
            found.extend((p, p.relative_to(path)) for p in files)
        elif path.exists():
            found.append((path, None))
        elif glob.has_magic(raw):
            matches = sorted(Path(p) for p in glob.glob(raw, recursive=recursive) if Path(p).is_file())
            if not matches:
                raise LarsrError(f"{raw}: no file matches this pattern")
            found.extend((p, None) for p in matches)
        else:
            raise LarsrError(f"{raw}: no such file or folder")
    return found


def _check_names(opts: NamingOptions) -> None:
    if not opts.output.strip():
        raise LarsrError("-o is empty; give an output file, a folder, or - for stdout")
    if "/" in opts.suffix or os.sep in opts.suffix or ".." in opts.suffix:
        raise LarsrError(f"--suffix {opts.suffix!r} must be plain text: no path separators or '..'")


def _is_earlier_output(src: Path | str, rel: Path | None, opts: NamingOptions, out_root: Path) -> bool:
    """A file a previous run in the same folder wrote (``stem{suffix}[_sN].ext``): not an input.
    ``out_root`` is the output folder, already resolved once by the caller."""
    if src == STDIO or rel is None or not opts.suffix:
        return False
    if re.search(re.escape(opts.suffix) + r"(_s\d+)?$", Path(src).stem) is None:
        return False  # the cheap name test first: most sources never touch the filesystem here
    return Path(src).resolve().is_relative_to(out_root)


def plan_jobs(inputs: tuple[str, ...], opts: NamingOptions) -> list[Job]:
    if not inputs:
        raise LarsrError("no input given; pass image files, folders, globs or - for stdin")
    if opts.samples < 1:
        raise LarsrError("--samples must be at least 1")
    _check_names(opts)
    sources = _expand(inputs, opts.recursive)
    seeds = [opts.seed + i for i in range(opts.samples)]
    out = opts.output
    if out == STDIO:
        if len(sources) != 1 or opts.samples != 1:
            raise LarsrError("-o - (stdout) takes exactly one input and one sample")
        src = sources[0][0]
        return [Job(src, STDIO, opts.seed, "<stdin>" if src == STDIO else str(src))]
    out_path = Path(out)
    names_a_file = out_path.suffix.lower() in IMAGE_SUFFIXES and not out_path.is_dir()
    one_output = len(sources) == 1 and sources[0][1] is None and opts.samples == 1
    if names_a_file and not one_output:
        count = len(sources) * opts.samples
        raise LarsrError(
            f"-o {out} names one file but {count} outputs would be written; give a folder instead"
        )
    explicit_folder = out.endswith(("/", os.sep)) or out_path.is_dir()
    if out_path.suffix and not names_a_file and not explicit_folder:
        raise LarsrError(
            f"-o {out}: {out_path.suffix} is not an image suffix; use {suffix_list(dotted=True)}, "
            f"or end a folder name with / ({out}/)"
        )
    if names_a_file and one_output and sources[0][0] != STDIO:
        if out_path.resolve() == Path(sources[0][0]).resolve():
            raise LarsrError(f"-o {out} is the input itself; larsr never replaces the photo it reads")
    if names_a_file:
        _check_file_target(out_path, opts.format)
        src = sources[0][0]
        return [Job(src, out_path, opts.seed, "<stdin>" if src == STDIO else str(src))]
    jobs = []
    out_root = out_path.resolve()
    sources = [(src, rel) for src, rel in sources if not _is_earlier_output(src, rel, opts, out_root)]
    for src, rel in sources:
        stem_rel = (
            rel.with_suffix("") if rel is not None else Path("stdin" if src == STDIO else Path(src).stem)
        )
        suffix = _target_suffix(src, opts.format)
        for seed in seeds:
            sample = f"_s{seed}" if opts.samples > 1 else ""
            name = f"{stem_rel.name}{opts.suffix}{sample}{suffix}"
            target = out_path / stem_rel.parent / name
            jobs.append(Job(src, target, seed, "<stdin>" if src == STDIO else str(src)))
    if not jobs:
        raise LarsrError(f"every input already is an output of --suffix {opts.suffix!r}; nothing to do")
    sources_resolved = {Path(s).resolve() for s, _ in sources if s != STDIO}
    for job in jobs:
        if Path(job.target).resolve() in sources_resolved:
            raise LarsrError(f"{job.target} is also an input; larsr never replaces the photo it reads")
    targets = [j.target for j in jobs]
    if len(set(targets)) != len(targets):
        clash = next(t for t in targets if targets.count(t) > 1)
        raise LarsrError(f"two inputs would both be written to {clash}; rename one or use separate runs")
    return jobs
