"""The heap's trim mark: seconds and peak RSS of a tiled image with trims at every point against
trims only above a resident-set mark (``larsr_cli.heap.set_trim_above``).

Why: every page a trim hands back is faulted in again by the next stage; below the mark the freed
pages stay for reuse. Each mark runs in its own fresh process (the heap's history is part of what
is measured), marks alternating pair by pair so that a machine whose speed drifts is compared with
itself: three 256 px warm-ups, two 1024 px inputs (4096 px outputs, ``--tile auto``), then the
shapes a long-lived process meets (1000x640, 700x700) and the 1024 px input again. Peak RSS is
sampled every 3 ms over the whole sequence; every output must be the same bytes whatever the mark.

    python -m benchmarks.trim_mark [--marks 0,800] [--pairs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_RESULTS,
    REPO_DIR,
    BenchError,
    command_line,
    log,
    machine_info,
    run_main,
    write_json,
)

MODEL = REPO_DIR / "models" / "larsr-x4"
LONG_LIVED = ((1000, 640), (700, 700))


def child(mark_mib: int, threads: int) -> dict[str, Any]:
    """One process's sequence at one mark (runs in the child)."""
    from benchmarks.speed import make_input, source_photo
    from larsr_cli.heap import resident_bytes, set_trim_above
    from larsr_cli.pipeline import Upscaler

    set_trim_above(mark_mib * 2**20)
    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], resident_bytes() or 0)
            time.sleep(0.003)

    threading.Thread(target=sample, daemon=True).start()
    upscaler = Upscaler(MODEL, threads=threads)
    rgb = make_input(source_photo(str(REPO_DIR / "data" / "photos"), []), 1024).astype(np.float32) / 255.0
    for _ in range(3):
        upscaler.upscale_array(rgb[:256, :256], seed=0)
    seconds, digest = [], None
    for step in ("1024", "1024", *LONG_LIVED, "1024"):
        image = rgb if isinstance(step, str) else rgb[: step[0], : step[1]]
        start = time.perf_counter()
        out = upscaler.upscale_array(image, seed=0)
        if isinstance(step, str):
            seconds.append(round(time.perf_counter() - start, 2))
            digest = digest or int(out[::5, ::5].astype(np.int64).sum())
    return {
        "mark_mib": mark_mib,
        "seconds_1024": seconds,
        "peak_rss_mib": round(peak[0] / 2**20),
        "digest": digest,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trim_mark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--marks", default="0,800", help="trim marks in MiB, 0 = trim at every point")
    parser.add_argument("--pairs", type=int, default=2, help="rounds over the marks (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    try:
        marks = [int(m) for m in args.marks.split(",") if m.strip()]
    except ValueError:
        raise BenchError(f"--marks must be comma-separated MiB, got {args.marks!r}") from None
    if not marks or min(marks) < 0 or args.pairs < 1:
        raise BenchError("--marks must be 0 or more MiB and --pairs at least 1")
    runs = []
    for round_ in range(args.pairs):
        for mark in marks:
            log(f"round {round_ + 1}: mark {mark} MiB")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.trim_mark",
                "--child",
                str(mark),
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, check=False)
            if proc.returncode:
                raise BenchError(f"mark {mark}: child failed: {proc.stderr.strip().splitlines()[-1:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    digests = {r["digest"] for r in runs}
    summary = {
        str(mark): {
            "fastest_s_mean": round(
                float(np.mean([min(r["seconds_1024"]) for r in runs if r["mark_mib"] == mark])), 2
            ),
            "peak_rss_mib": [r["peak_rss_mib"] for r in runs if r["mark_mib"] == mark],
        }
        for mark in marks
    }
    result = {
        "kind": "trim_mark",
        "command": command_line("benchmarks.trim_mark", argv),
        "machine": machine_info(),
        "runs": runs,
        "summary": summary,
        "outputs_identical": len(digests) == 1,
    }
    write_json(args.out / "trim_mark.json", result)
    print(json.dumps(summary, indent=1), "identical:", len(digests) == 1)
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(run_main(main))
