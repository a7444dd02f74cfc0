"""Speed and memory of x4 upscaling on the CPU: larsr per stage against bicubic and the peers.

Seconds per output megapixel for square inputs (default 128, 256 and 512 px), all methods in the
same run so that the ratios hold even on a shared, noisy machine. larsr is split into its stages by
wrapping its onnxruntime sessions in a timing proxy (coarse, condition, the k*k ``lar_step`` runs,
decoder) and timing the numpy sampling through a wrapping ``Sampler`` (the draws and the seeded
noise), both through public seams of ``Upscaler``; what is left
(padding, tiling, cache writes, quantisation) is reported as "other". Then peak RSS and wall time
of a whole ``larsr upscale`` process per input size (default 256, 1024 and 2048 px), measured with
``os.wait4`` on that process alone (``benchmarks/rss_probe.py``).

    python -m benchmarks.speed --model models/larsr-x4
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from benchmarks.common import (
    BENCH_DIR,
    DEFAULT_RESULTS,
    REPO_DIR,
    BenchError,
    Peer,
    command_line,
    installed_peers,
    last_json_line,
    log,
    machine_info,
    model_info,
    open_upscaler,
    run_main,
    run_peer,
    select_peers,
    write_json,
    write_text,
)
from benchmarks.flops import count as count_flops
from benchmarks.peak import best_peaks, measure_peaks
from export.degrade import to_uint8
from larsr_cli.heap import page_bytes
from larsr_cli.sampler import Sampler, TileDraw

SCALE = 4
STAGES = ("coarse", "condition", "lar_step", "sampling", "decoder", "other")
STAGE_LABELS = {
    "coarse": "coarse",
    "condition": "condition",
    "lar_step": "LAR steps",
    "sampling": "sampling (numpy)",
    "decoder": "decode",
    "other": "other",
}


# --------------------------------------------------------------------------------------------
# Instrumenting larsr


# Called after every run of a proxied session: (graph role, seconds the run took).
RunObserver = Callable[[str, float], None]


class ObservedSession:
    """Stands in for an onnxruntime session and tells ``observe`` about every run (its role and
    seconds): the timing here, ``benchmarks.heap_trace``'s heap notes.

    The pipeline looks its sessions up by name on every call, so swapping the dict entries is
    enough: the code being measured is the shipped code, not a re-implementation of it.
    """

    def __init__(self, inner: Any, role: str, observe: RunObserver) -> None:
        self._inner, self._role, self._observe = inner, role, observe

    def _observed(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self._observe(self._role, time.perf_counter() - start)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._observed(self._inner.run, *args, **kwargs)

    def run_with_iobinding(self, *args: Any, **kwargs: Any) -> Any:
        """The LAR step's bound runs (``larsr_cli.arch.lar.step_runner``), observed the same way."""
        return self._observed(self._inner.run_with_iobinding, *args, **kwargs)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)


@contextmanager
def observed_sessions(upscaler: Any, observe: RunObserver) -> Iterator[None]:
    """Every session of ``upscaler`` reports its runs to ``observe`` until the block ends; the
    upscaler has its own sessions back afterwards."""
    sessions = dict(upscaler.sessions)
    for role, session in sessions.items():
        upscaler.sessions[role] = ObservedSession(session, role, observe)
    try:
        yield
    finally:
        upscaler.sessions.update(sessions)


class TimedSampler(Sampler):
    """Wraps the sampler the pipeline would resolve and adds the time of every draw (and of the
    per-tile seeded noise) to the tally: the public ``sampler=`` seam of ``upscale_array``."""

    def __init__(self, inner: Sampler, tally: dict[str, float]) -> None:
        self.inner, self.tally, self.stochastic = inner, tally, inner.stochastic

    def tile(self, index_box: Any, patch_size: int) -> TileDraw:
        start = time.perf_counter()
        draw = self.inner.tile(index_box, patch_size)  # the noise window is drawn here
        self.tally["sampling"] += time.perf_counter() - start

        def timed(logits: np.ndarray, positions: tuple[int, ...]) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return draw(logits, positions)
            finally:
                self.tally["sampling"] += time.perf_counter() - t0

        return timed


@contextmanager
def instrumented(upscaler: Any) -> Iterator[tuple[dict[str, float], dict[str, int]]]:
    """Time the sessions of ``upscaler`` until the block ends: seconds and runs per graph role."""
    tally: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def observe(role: str, seconds: float) -> None:
        tally[role] += seconds
        counts[role] += 1

    with observed_sessions(upscaler, observe):
        yield tally, counts


# A run that page-faults less than this is settled: the heap serves what it needs.
SETTLED_FAULT_BYTES = 8 * 2**20
PAGE_BYTES = page_bytes()


def minor_faults() -> int:
    """Pages this process has faulted in so far (Linux counts each first touch of a page)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def still_settling(previous_faults: int | None, faults: int) -> bool:
    """Whether another warm-up run at this size is worth it before the timed repeats.

    Why warm-up per size: glibc's heap, which serves onnxruntime's tensors, reaches the layout
    that a size reuses without new pages only after several runs (a 256 px input on a 2-core EPYC
    faulted 85k pages in its first run, 20-40k in the next three, none from the seventh, and ran
    1.5 -> 0.83 s). Timing the second run, as this benchmark did, measured the heap growing, not
    the steady state it claims. Settled: the run faulted under ``SETTLED_FAULT_BYTES``, or no fewer
    pages than the run before (a tiled image trims its heap between tiles on purpose, so it
    faults the same every run and there is nothing to wait for).
    """
    if faults * PAGE_BYTES < SETTLED_FAULT_BYTES:
        return False
    return previous_faults is None or faults < 0.9 * previous_faults


def time_larsr(
    upscaler: Any, lr: np.ndarray, temperature: float, tile: str, repeats: int, max_settle: int = 0
) -> dict[str, Any]:
    """Whole-image seconds per repeat and the stage split of the fastest repeat.

    With ``max_settle`` > 0 the first run at this size is timed on its own (``first_s``: what a
    one-image ``larsr upscale`` pays after loading) and up to ``max_settle`` more warm-up runs
    follow while ``still_settling``; then the ``repeats`` timed runs.
    """
    rgb = lr.astype(np.float32) / 255.0

    def one_run() -> tuple[float, dict[str, float], dict[str, int], int]:
        faults0 = minor_faults()
        with instrumented(upscaler) as (tally, counts):
            start = time.perf_counter()
            sampler = TimedSampler(upscaler.resolve_sampler(temperature, 0), tally)
            upscaler.upscale_array(rgb, tile=tile, out_dtype=np.uint8, sampler=sampler)
            total = time.perf_counter() - start
        stages = {k: float(tally.get(k, 0.0)) for k in STAGES if k != "other"}
        stages["other"] = max(0.0, total - sum(stages.values()))
        return total, stages, dict(counts), minor_faults() - faults0

    settle: dict[str, Any] = {}
    if max_settle > 0:
        first, _, _, faults = one_run()
        warmups, previous = [faults], None
        while len(warmups) <= max_settle and still_settling(previous, faults):
            previous = faults
            faults = one_run()[3]
            warmups.append(faults)
        settle = {
            "first_s": round(first, 4),
            "settle_runs": len(warmups) - 1,
            "warmup_fault_mib": [round(f * PAGE_BYTES / 2**20, 1) for f in warmups],
        }
    runs = [one_run() for _ in range(repeats)]
    best = min(runs, key=lambda r: r[0])
    return {
        "seconds": [round(r[0], 4) for r in runs],
        "fault_mib": [round(r[3] * PAGE_BYTES / 2**20, 1) for r in runs],
        **settle,
        "stages_s": {k: round(v, 4) for k, v in best[1].items()},
        "session_runs": best[2],
        "tiles": len(upscaler.plan(lr.shape[0], lr.shape[1], tile)),
    }


# --------------------------------------------------------------------------------------------
# Other methods


def time_bicubic(lr: np.ndarray, repeats: int) -> dict[str, Any]:
    """cv2 INTER_CUBIC on the uint8 image: the cheapest thing a user could do instead."""
    h, w = lr.shape[:2]
    cv2.resize(lr, (w * SCALE, h * SCALE), interpolation=cv2.INTER_CUBIC)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        cv2.resize(lr, (w * SCALE, h * SCALE), interpolation=cv2.INTER_CUBIC)
        seconds.append(time.perf_counter() - start)
    return {"seconds": [round(s, 6) for s in seconds], "threads": cv2.getNumThreads()}


def time_peers(
    peers: list[Peer], inputs: dict[int, np.ndarray], threads: int | None, repeats: int, notes: list[str]
) -> dict[str, dict[int, dict[str, Any]]]:
    """Each installed peer over all input sizes in one process (model loaded once, warmed up)."""
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="larsr-speed-") as tmp:
        in_dir = Path(tmp) / "in"
        in_dir.mkdir()
        for size, img in inputs.items():
            Image.fromarray(img).save(in_dir / f"s{size:05d}.png")
        for peer in installed_peers(peers, notes):
            log(f"  {peer.label}: sizes {', '.join(map(str, inputs))}")
            try:
                report = run_peer(peer, in_dir, Path(tmp) / peer.key, repeats=repeats, threads=threads)
            except BenchError as exc:  # a broken peer costs its rows, not the whole run
                notes.append(f"skipped {exc}")
                log(f"  {exc}: skipped")
                continue
            info = {k: v for k, v in report.items() if k not in ("seconds", "output_size")}
            results[peer.key] = {
                size: {"seconds": report["seconds"][f"s{size:05d}.png"], "info": info} for size in inputs
            }
    return results


# --------------------------------------------------------------------------------------------
# Inputs


def source_photo(photos: str | None, notes: list[str]) -> np.ndarray | None:
    """The first validation photo (uint8), so inputs look like photos; None falls back to synthetic."""
    if not photos:
        return None
    try:
        from export.data import prepared_photo, read_manifest, select

        entries = sorted(select(read_manifest(photos), "val"), key=lambda e: str(e["name"]))
        if entries:
            notes.append(f"inputs cut from the validation photo {entries[0]['name']}")
            return prepared_photo(photos, entries[0])
    except (FileNotFoundError, OSError, ValueError) as exc:
        notes.append(f"no photos ({str(exc).splitlines()[0]}): synthetic inputs")
        return None
    notes.append("no validation photos: synthetic inputs")
    return None


def make_input(src: np.ndarray | None, size: int) -> np.ndarray:
    """A size x size uint8 RGB input: a centre crop of the photo (resized up if it is too small).

    Content barely matters for speed (no method here adapts its work to the image), so a seeded
    synthetic image stands in when no photo is available.
    """
    if src is None:
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        noise = np.random.default_rng(size).random((size, size, 3), dtype=np.float32)
        img = np.stack([x, y, 0.5 * (x + y)], axis=2) * 0.7 + 0.3 * noise
        return to_uint8(img)
    h, w = src.shape[:2]
    if min(h, w) < size:
        factor = size / min(h, w)
        new = (max(size, round(w * factor)), max(size, round(h * factor)))
        src = np.asarray(Image.fromarray(src).resize(new, Image.Resampling.BICUBIC))
        h, w = src.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(src[top : top + size, left : left + size])


# --------------------------------------------------------------------------------------------
# Memory: one larsr process per size


def peak_rss_run(model: Path, img: np.ndarray, tmp: Path, threads: int | None, tile: str) -> dict[str, Any]:
    """Wall time and peak RSS of one ``larsr upscale`` process, through ``rss_probe.py``.

    The probe (a small stdlib process) starts larsr and reads its rusage with ``os.wait4``, so the
    number is larsr's own peak: neither this process's size nor earlier children leak into it.
    """
    size = img.shape[0]
    inp, out = tmp / f"in_{size}.png", tmp / f"out_{size}.png"
    Image.fromarray(img).save(inp)
    larsr_args = ["upscale", str(inp), "-o", str(out), "--model", str(model), "--seed", "0"]
    larsr_args += ["--tile", tile, "--quiet", "--overwrite"]
    larsr_args += ["--threads", str(threads)] if threads else []
    probe = [sys.executable, str(BENCH_DIR / "rss_probe.py"), sys.executable, "-m", "larsr_cli.cli"]
    proc = subprocess.run(probe + larsr_args, capture_output=True, text=True, cwd=REPO_DIR, check=False)
    report = last_json_line(proc.stdout)
    if proc.returncode != 0 or report is None or report["rc"] != 0 or not out.is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"larsr upscale of a {size}x{size} input failed: {tail}")
    png_bytes = out.stat().st_size
    inp.unlink()
    out.unlink()
    shown = " ".join(["larsr", *larsr_args]).replace(str(inp), "IN.png").replace(str(out), "OUT.png")
    return {
        "input": size,
        "output": size * SCALE,
        "wall_s": round(report["wall_s"], 3),
        "peak_rss_mib": round(report["maxrss_kib"] / 1024.0, 1),  # Linux reports KiB
        "kernel_s": round(report["sys_s"], 2),
        "minor_faults": report["minor_faults"],
        "output_buffer_mib": round((size * SCALE) ** 2 * 3 / 2**20, 1),
        "png_mib": round(png_bytes / 2**20, 2),
        "command": shown,
    }


# --------------------------------------------------------------------------------------------
# Summary


def _ratio(a: float, b: float | None) -> float | None:
    """a / b to four significant digits; bicubic is ~1000x faster, so fixed decimals would lose it."""
    return float(f"{a / b:.4g}") if b else None


# Which counted graph each timed stage runs (sampling and "other" are numpy work, no FLOPs counted).
STAGE_GRAPHS = {"coarse": "coarse", "condition": "condition", "lar_step": "lar_step", "decoder": "decoder"}


def efficiency(
    stages_s_per_mpx: dict[str, float], flops_per_px: dict[str, int], peak_gflops: float
) -> dict[str, dict[str, float]]:
    """Achieved GFLOP/s and fraction of the measured fp32 peak, per stage and end to end.

    FLOPs come from ``benchmarks.flops`` (one untiled tile, so margins are not counted as useful
    work: a tiled run that recomputes margins shows as a lower fraction, as it should).
    """
    out: dict[str, dict[str, float]] = {}
    for stage, graph in STAGE_GRAPHS.items():
        seconds = stages_s_per_mpx.get(stage, 0.0)
        if seconds > 0 and graph in flops_per_px:
            gflops = flops_per_px[graph] * 1e6 / seconds / 1e9
            out[stage] = {"gflops": round(gflops, 1), "of_peak": round(gflops / peak_gflops, 3)}
    total_s = sum(stages_s_per_mpx.values())
    gflops = sum(flops_per_px.values()) * 1e6 / total_s / 1e9
    out["total"] = {"gflops": round(gflops, 1), "of_peak": round(gflops / peak_gflops, 3)}
    return out


def summarise(
    size: int, methods: dict[str, dict[str, Any]], larsr_keys: tuple[str, ...] = ("larsr",)
) -> dict[str, Any]:
    """Seconds per output megapixel from the fastest repeat, and ratios to bicubic and to larsr
    (fp32). The fastest repeat is the one least disturbed by the rest of a shared machine."""
    mpx = (size * SCALE) ** 2 / 1e6
    best = {k: min(v["seconds"]) for k, v in methods.items()}
    for key, entry in methods.items():
        entry["best_s"] = round(best[key], 6)
        entry["s_per_mpx"] = round(best[key] / mpx, 6)
        entry["x_bicubic"] = _ratio(best[key], best.get("bicubic"))
        entry["x_larsr"] = _ratio(best[key], best.get("larsr"))
    for key in larsr_keys:
        if key in methods:
            stages = methods[key]["stages_s"]
            methods[key]["stages_s_per_mpx"] = {k: round(v / mpx, 5) for k, v in stages.items()}
    return {"input": size, "output": size * SCALE, "output_mpx": round(mpx, 4), "methods": methods}


def tiling_cost(rows: list[dict[str, Any]], tiled_size: int, larsr_keys: tuple[str, ...]) -> dict[str, Any]:
    """s / output Mpx of the tiled size over the 256 px (else largest untiled) size, per precision."""
    by_input = {row["input"]: row for row in rows}
    if not tiled_size or tiled_size not in by_input:
        return {}
    untiled = [size for size in by_input if size != tiled_size]
    if not untiled:
        return {}
    base = 256 if 256 in untiled else max(untiled)
    out: dict[str, Any] = {"tiled_input": tiled_size, "untiled_input": base}
    for key in larsr_keys:
        tiled, plain = by_input[tiled_size]["methods"].get(key), by_input[base]["methods"].get(key)
        if tiled and plain:
            out[key] = {
                "tiles": tiled["tiles"],
                "ratio": round(tiled["s_per_mpx"] / plain["s_per_mpx"], 3),
            }
    return out


def parse_sizes(text: str, flag: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if any(s < 8 for s in sizes):
        raise BenchError(f"{flag}: sizes must be at least 8 px")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/larsr-x4", help="larsr model folder")
    parser.add_argument("--images", default="data/photos", help="photos to cut inputs from ('' = synthetic)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    parser.add_argument("--sizes", default="128,256,512", help="input sides timed (default 128,256,512)")
    parser.add_argument("--repeats", type=int, default=2, help="larsr runs per size (default 2)")
    parser.add_argument(
        "--settle",
        type=int,
        default=10,
        help="most warm-up runs per size before larsr's timed repeats, until its heap stops growing "
        "(default 10; 0 = none)",
    )
    parser.add_argument("--bicubic-repeats", type=int, default=20, help="cv2 runs per size (default 20)")
    parser.add_argument("--peer-repeats", type=int, default=1, help="peer runs per size (default 1)")
    parser.add_argument("--peers", nargs="*", default=["all"], help="realesrgan, dat, all (default) or none")
    parser.add_argument(
        "--rss-sizes", default="256,1024,2048", help="inputs for the larsr upscale RSS runs ('' = none)"
    )
    parser.add_argument("--temperature", type=float, help="override the manifest's default temperature")
    parser.add_argument("--threads", type=int, help="CPU threads for larsr, cv2's pool and DAT (default all)")
    parser.add_argument("--tile", default="auto", help="larsr tile size in LR px (default auto)")
    parser.add_argument(
        "--precisions", default="fp32,int8", help="larsr precisions timed (int8 where the model ships it)"
    )
    parser.add_argument(
        "--tiled-size",
        type=int,
        default=1024,
        help="a larger input timed with --tile auto, larsr only (0 = none)",
    )
    args = parser.parse_args(argv)
    args.precision_list = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not set(args.precision_list) <= {"fp32", "int8"} or "fp32" not in args.precision_list:
        raise BenchError("--precisions: fp32 plus optionally int8, e.g. fp32,int8")
    args.size_list = parse_sizes(args.sizes, "--sizes")
    args.rss_list = parse_sizes(args.rss_sizes, "--rss-sizes") if args.rss_sizes.strip() else []
    if min(args.repeats, args.bicubic_repeats, args.peer_repeats) < 1:
        raise BenchError("repeat counts must be at least 1")
    if args.settle < 0:
        raise BenchError("--settle must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    peers = select_peers(args.peers)
    upscaler = open_upscaler(args.model, args.threads, precision="fp32")
    # Each precision the model ships, as its own method: "larsr" is fp32, the baseline of the
    # stage and efficiency tables; "larsr_int8" the int8 graphs where the model has them.
    larsrs = {"larsr": upscaler}
    if "int8" in args.precision_list:
        if "int8" in upscaler.manifest.precisions:
            larsrs["larsr_int8"] = open_upscaler(args.model, args.threads, precision="int8")
        else:
            notes.append("the model ships no int8 graphs: fp32 only")
    if args.threads:
        cv2.setNumThreads(args.threads)
    temperature = upscaler.default_temperature if args.temperature is None else float(args.temperature)
    src = source_photo(args.images, notes)
    inputs = {size: make_input(src, size) for size in args.size_list}
    log("machine peak, before the timed runs")
    peaks = [measure_peaks(args.threads)]
    log("larsr warm-up")
    for each in larsrs.values():
        time_larsr(each, make_input(src, 64), temperature, args.tile, 1)
    per_size: dict[int, dict[str, dict[str, Any]]] = {}
    for size, lr in inputs.items():
        log(f"{size}x{size}: bicubic, larsr")
        per_size[size] = {"bicubic": time_bicubic(lr, args.bicubic_repeats)}
        for key, each in larsrs.items():
            per_size[size][key] = time_larsr(each, lr, temperature, args.tile, args.repeats, args.settle)
    for key, by_size in time_peers(peers, inputs, args.threads, args.peer_repeats, notes).items():
        for size, entry in by_size.items():
            per_size[size][key] = entry
    if args.tiled_size:
        # A large input through --tile auto, larsr only (the peers would take many minutes):
        # its seconds per output Mpx against the untiled sizes is the price of tiling.
        size = args.tiled_size
        log(f"{size}x{size}: larsr tiled")
        lr = make_input(src, size)
        per_size[size] = {"bicubic": time_bicubic(lr, args.bicubic_repeats)}
        for key, each in larsrs.items():
            per_size[size][key] = time_larsr(each, lr, temperature, "auto", 1, args.settle)
    rows = [summarise(size, methods, tuple(larsrs)) for size, methods in per_size.items()]
    log("machine peak (onnxruntime conv/GEMM) and FLOP count")
    peaks.append(measure_peaks(args.threads))
    peak = best_peaks(peaks)
    flops = count_flops(upscaler.folder)
    for row in rows:
        larsr = row["methods"]["larsr"]
        larsr["efficiency"] = efficiency(larsr["stages_s_per_mpx"], flops["graphs"], peak["fp32_peak_gflops"])
    tiling = tiling_cost(rows, args.tiled_size, tuple(larsrs))
    memory = []
    with tempfile.TemporaryDirectory(prefix="larsr-rss-") as tmp:
        for size in args.rss_list:
            log(f"larsr upscale {size}x{size} -> {size * SCALE}x{size * SCALE}: peak RSS")
            img = make_input(src, size)
            memory.append(peak_rss_run(upscaler.folder.resolve(), img, Path(tmp), args.threads, args.tile))
    labels = {"bicubic": "bicubic (cv2 INTER_CUBIC)", "larsr": f"larsr T={temperature:g} fp32"}
    labels["larsr_int8"] = f"larsr T={temperature:g} int8"
    labels.update({p.key: p.label for p in peers})
    result = {
        "kind": "speed",
        "command": command_line("benchmarks.speed", argv),
        "machine": machine_info(),
        "model": model_info(upscaler),
        "settings": {
            "sizes": args.size_list,
            "repeats": {"larsr": args.repeats, "bicubic": args.bicubic_repeats, "peers": args.peer_repeats},
            "temperature": temperature,
            "tile": args.tile,
            "tiled_size": args.tiled_size,
            "precisions": {key: each.precision for key, each in larsrs.items()},
            "threads": args.threads or os.cpu_count(),
            "timing": (
                "fastest repeat, steady state (models loaded and warmed up first; larsr warmed up "
                f"at each size until its heap stopped growing, at most {args.settle} runs)"
                if args.settle
                else "fastest repeat (models loaded and warmed up first)"
            ),
            "settle": args.settle,
            "stages": STAGE_LABELS,
        },
        "labels": labels,
        "rows": rows,
        "peak": peak,
        "flops": flops,
        "memory": memory,
        "tiling": tiling,
        "notes": notes,
    }
    write_json(args.out / "speed.json", result)
    from benchmarks.report import speed_markdown

    write_text(args.out / "speed.md", speed_markdown(result))
    log(f"wrote {args.out / 'speed.json'} and speed.md")
    print(speed_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
