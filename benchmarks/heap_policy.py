"""What the heap trims cost and what they buy: a tiled 4096 px output with and without them.

Why: larsr bounds peak RSS by handing freed heap pages back to the OS between strips, stages
and tiles (``larsr_cli.heap.release_freed_memory``), and every page handed back is faulted in
again by the next stage (``benchmarks.refault`` measures the rate; slowest with huge pages,
``--huge-pages``). This runs the same work in a fresh process per policy (the heap's history is part of
what is measured): a 64 px warm-up, three 256 px inputs (untiled: the rate tiling is compared
with) and two 1024 px inputs with ``--tile auto``, in-process as ``benchmarks.speed`` does, and
records seconds, kernel seconds and peak RSS per policy. Policies: the trims on at the default
memory budget, the trims off at several budgets (a smaller budget plans smaller tiles, so a
heap that never shrinks may still stay bounded), ``--stage-budgets``: every trim but those
after structure strips, ``--tile-budgets``: trims between tiles
only, none after structure strips or between a tile's stages, and ``--image-budgets``: a trim
before each large image only (with the ``shared`` arena, which is emptied there first, the
arena keeps its chunks from stage to stage and tile to tile within an image). ``--marks`` runs the trims-on
policy at several trim marks (``larsr_cli.heap.set_trim_above``: a trim point hands memory back
only while the process holds more), ``--arenas`` runs every policy under each of onnxruntime's
arena policies (``larsr_cli.sessions.ARENA_POLICIES``: one arena shared by all sessions, or one for
the LAR step only and glibc's heap for the rest), and ``--pairs`` repeats the whole round so that the policies
alternate on a machine whose speed drifts. ``--mixed`` goes on in the same process with
the images a long-lived process (a Ray worker, an API) meets: 1000x1600, 700x700 and 1024x1024
again, and records the peak after them: what one image leaves in the heap can raise the next
one's peak.

    python -m benchmarks.heap_policy [--budgets 1.2,0.9,0.8] [--on-budgets 1.0] [--tile-budgets 0.9]
        [--image-budgets 1.0]
        [--marks 0,800] [--arenas shared,per-graph]
        [--pairs 2] [--mixed] [--name heap_policy]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_RESULTS,
    REPO_DIR,
    BenchError,
    child_report,
    command_line,
    log,
    machine_info,
    run_main,
    write_json,
    write_text,
)
from larsr_cli.heap import TRIM_POINTS
from larsr_cli.sessions import ARENA_POLICIES

MODEL = REPO_DIR / "models" / "larsr-x4"
SCALE = 4


# (rows, cols) of the --mixed runs, after the square ones: centre crops of the same photo.
MIXED = ((1000, 1600), (700, 700), (1024, 1024))


def crop(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A rows x cols centre crop of ``benchmarks.speed.make_input``'s square of the longer side
    (for a square, that square itself: the input ``benchmarks.speed`` times)."""
    from benchmarks.speed import make_input

    square = make_input(src, max(rows, cols))
    top, left = (square.shape[0] - rows) // 2, (square.shape[1] - cols) // 2
    return np.ascontiguousarray(square[top : top + rows, left : left + cols])


# Trim policies: where ``larsr_cli.heap.release_freed_memory`` may hand memory back.
POLICIES = {
    "on": TRIM_POINTS,
    "stages": ("image", "tile", "stage"),  # none between structure strips
    "tiles": ("image", "tile"),
    "image": ("image",),
    "off": (),
}


def child(
    budget: float,
    trims: str,
    threads: int,
    mixed: bool = False,
    mark_mib: int | None = None,
    arena: str | None = None,
    huge_pages: str = "default",
) -> dict[str, Any]:
    """One policy in this process: the runs and their seconds, kernel seconds and peak RSS.
    ``mark_mib``: the trim mark (``larsr_cli.heap.set_trim_above``; None keeps larsr's);
    ``arena``: onnxruntime's arena policy (``larsr_cli.sessions.set_arena_policy``; None keeps
    larsr's); ``huge_pages``: ``numpy`` turns numpy's huge-page marking of large arrays back on
    after the Upscaler turned it off (``larsr_cli.heap.keep_numpy_off_huge_pages``), ``default``
    keeps larsr's."""
    from benchmarks.common import open_upscaler
    from benchmarks.speed import source_photo
    from larsr_cli.heap import TRIM_ABOVE_BYTES, set_numpy_huge_pages, set_trim_above, set_trim_points
    from larsr_cli.sessions import arena_policy, set_arena_policy

    if arena is not None:
        set_arena_policy(arena)
    set_trim_points(POLICIES[trims])
    mark = TRIM_ABOVE_BYTES if mark_mib is None else mark_mib * 2**20
    set_trim_above(mark)
    upscaler = open_upscaler(MODEL, threads, precision="fp32")
    upscaler.memory_budget = int(budget * 1e9)
    if huge_pages == "numpy" and set_numpy_huge_pages(True) is None:
        raise SystemExit("this numpy has no huge-page switch")
    src = source_photo("data/photos", [])
    if src is None:
        raise SystemExit("no photos: python -m export.data fetch data")
    runs = []
    plan = [("square", size, size, repeats) for size, repeats in ((64, 1), (256, 3), (1024, 2))]
    plan += [("mixed", rows, cols, 1) for rows, cols in MIXED] if mixed else []
    for phase, rows, cols, repeats in plan:
        lr = crop(src, rows, cols).astype(np.float32) / 255.0
        for _ in range(repeats):
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            upscaler.upscale_array(lr, tile="auto", out_dtype=np.uint8)
            seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            runs.append(
                {
                    "phase": phase,
                    "input": rows if rows == cols else f"{rows}x{cols}",
                    "tiles": len(upscaler.plan(rows, cols, "auto")),
                    "seconds": round(seconds, 3),
                    "s_per_mpx": round(seconds / (SCALE * SCALE * rows * cols / 1e6), 3),
                    "kernel_s": round(after.ru_stime - before.ru_stime, 2),
                    "peak_rss_mib": after.ru_maxrss // 1024,  # so far in this process
                }
            )
    return {
        "budget_gb": budget,
        "trims": trims,
        "mark_mib": mark >> 20,
        "arena": arena_policy(),
        "huge_pages": huge_pages,
        "runs": runs,
    }


def summary(policy: dict[str, Any]) -> dict[str, Any]:
    square = [r for r in policy["runs"] if r.get("phase", "square") == "square"]
    untiled = min(r["s_per_mpx"] for r in square if r["input"] == 256)
    tiled = [r for r in square if r["input"] == 1024]
    best = min(tiled, key=lambda r: r["seconds"])
    result = {
        "s_per_mpx_256": untiled,
        "s_per_mpx_1024": best["s_per_mpx"],
        "ratio": round(best["s_per_mpx"] / untiled, 3),
        "tiles": best["tiles"],
        "kernel_s": [r["kernel_s"] for r in tiled],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in tiled),
    }
    mixed = [r for r in policy["runs"] if r.get("phase") == "mixed"]
    if mixed:
        result["mixed"] = {str(r["input"]): r["s_per_mpx"] for r in mixed}
        result["peak_rss_mixed_mib"] = max(r["peak_rss_mib"] for r in mixed)
    return result


def _policy_name(policy: dict[str, Any]) -> str:
    """``on``, ``stages``, ``tiles``, ``image`` or ``off``, with the trim mark where one applied
    and the arena policy. Results recorded before the ``tiles`` policy hold a bool, those before
    the mark none, and those before the arena policies had per-graph arenas."""
    trims = policy["trims"]
    name = trims if isinstance(trims, str) else ("on" if trims else "off")
    mark = policy.get("mark_mib")
    name = f"{name} above {mark} MiB" if mark and name != "off" else name
    name = f"{name}, {policy.get('arena', 'per-graph')} arena"
    # Results recorded before the switch had numpy's huge pages.
    return name + (", numpy huge pages" if policy.get("huge_pages", "numpy") == "numpy" else "")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Heap trims: time against peak RSS (`benchmarks.heap_policy`)",
        "",
        "One fresh process per policy; in it 64 px, 3x 256 px (untiled) and 2x 1024 px -> 4096 px "
        "(`--tile auto`), fp32, 2 threads. Ratio: the faster 1024 px run's s / output Mpx over the "
        "fastest 256 px run's (the tiling bar is 1.15x); kernel s per 1024 px run.",
        "",
        "| trims | budget GB | tiles | 256 px s/Mpx | 1024 px s/Mpx | ratio | kernel s | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for p in result["policies"]:
        s = p["summary"]
        lines.append(
            f"| {_policy_name(p)} | {p['budget_gb']} | {s['tiles']} | {s['s_per_mpx_256']} | "
            f"{s['s_per_mpx_1024']} | {s['ratio']} | {', '.join(map(str, s['kernel_s']))} | "
            f"{s['peak_rss_mib']} |"
        )
    mixed = [p for p in result["policies"] if "mixed" in p["summary"]]
    if mixed:
        sizes = list(mixed[0]["summary"]["mixed"])
        lines += [
            "",
            "Then, in the same process (`--mixed`), the images a long-lived process meets; s / output "
            "Mpx per image and the process's peak RSS after them:",
            "",
            "| trims | budget GB | " + " | ".join(f"{size} s/Mpx" for size in sizes) + " | peak RSS MiB |",
            "| --- | ---: |" + " ---: |" * (len(sizes) + 1),
        ]
        for p in mixed:
            s = p["summary"]
            rates = " | ".join(str(s["mixed"].get(size, "")) for size in sizes)
            trims = _policy_name(p)
            lines.append(f"| {trims} | {p['budget_gb']} | {rates} | {s['peak_rss_mixed_mib']} |")
    m = result["machine"]
    lines += [
        "",
        f"Machine: {m.get('cpu_model')}; flags {', '.join(m.get('cpu_flags') or [])}; {result['date']}.",
        f"Command: `{result['command']}`.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from larsr_cli.pipeline import DEFAULT_MEMORY_BUDGET

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="1.2,0.9,0.8,0.7", help="memory budgets (GB) run without trims")
    default = f"{DEFAULT_MEMORY_BUDGET / 1e9:g}"
    parser.add_argument("--on-budgets", default=default, help="budgets (GB) run with trims (larsr's)")
    parser.add_argument(
        "--tile-budgets", default="", help="budgets (GB) run with trims between tiles only (default none)"
    )
    parser.add_argument(
        "--stage-budgets",
        default="",
        help="budgets (GB) run with every trim but those after structure strips (default none)",
    )
    parser.add_argument(
        "--image-budgets", default="", help="budgets (GB) run with a trim before each large image only"
    )
    parser.add_argument(
        "--marks",
        default="",
        help="trim marks (MiB, 0 = trim at every point) for the trims-on runs (default larsr's)",
    )
    parser.add_argument(
        "--arenas", default="", help="onnxruntime arena policies to run every policy under (default larsr's)"
    )
    parser.add_argument(
        "--huge-pages",
        default="",
        help="default (larsr's: numpy's huge-page marking off) and/or numpy (on) for every policy",
    )
    parser.add_argument("--pairs", type=int, default=1, help="rounds over the policies (default 1)")
    parser.add_argument("--name", default="heap_policy", help="results file stem (default heap_policy)")
    parser.add_argument("--mixed", action="store_true", help="then 1000x1600, 700x700, 1024x1024 in-process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--child", nargs=5, metavar=("BUDGET", "TRIMS", "MARK", "ARENA", "HUGE"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.child[1] not in POLICIES:
            raise BenchError(f"unknown trim policy {args.child[1]!r}")
        mark = None if args.child[2] == "default" else int(args.child[2])
        arena = None if args.child[3] == "default" else args.child[3]
        budget, trims, huge = float(args.child[0]), args.child[1], args.child[4]
        print(json.dumps(child(budget, trims, args.threads, args.mixed, mark, arena, huge)))
        return 0
    marks = [m.strip() for m in args.marks.split(",") if m.strip()] or ["default"]
    if any(m != "default" and not m.isdigit() for m in marks) or args.pairs < 1:
        raise BenchError("--marks must be comma-separated MiB (0 or more) and --pairs at least 1")
    arenas = [a.strip() for a in args.arenas.split(",") if a.strip()] or ["default"]
    unknown = sorted(set(arenas) - {"default", *ARENA_POLICIES})
    if unknown:
        expected = ", ".join(ARENA_POLICIES)
        raise BenchError(f"--arenas: unknown {', '.join(unknown)}; expected some of {expected}")
    policies = [(float(b), "on", m) for b in args.on_budgets.split(",") if b.strip() for m in marks]
    policies += [(float(b), "stages", m) for b in args.stage_budgets.split(",") if b.strip() for m in marks]
    policies += [(float(b), "tiles", "default") for b in args.tile_budgets.split(",") if b.strip()]
    policies += [(float(b), "image", "default") for b in args.image_budgets.split(",") if b.strip()]
    policies += [(float(b), "off", "default") for b in args.budgets.split(",") if b.strip()]
    huge = [h.strip() for h in args.huge_pages.split(",") if h.strip()] or ["default"]
    if set(huge) - {"default", "numpy"}:
        raise BenchError("--huge-pages: expected default and/or numpy")
    rounds = [(*p, arena, h) for p in policies for arena in arenas for h in huge] * args.pairs
    results = []
    # Rounds alternate: a drifting machine meets every policy.
    for budget, trims, mark, arena, pages in rounds:
        log(f"trims {trims}, budget {budget} GB, mark {mark}, arena {arena}, huge pages {pages}")
        child_args = ["--threads", str(args.threads), "--child", str(budget), trims, mark, arena, pages]
        child_args += ["--mixed"] if args.mixed else []
        where = f"{trims}/{budget} GB/mark {mark}/arena {arena}/huge pages {pages}"
        policy = child_report("benchmarks.heap_policy", child_args, where)
        policy["summary"] = summary(policy)
        log(f"  {policy['summary']}")
        results.append(policy)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line("benchmarks.heap_policy", argv),
        "machine": machine_info(),
        "policies": results,
    }
    write_json(args.out / f"{args.name}.json", result)
    write_text(args.out / f"{args.name}.md", markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
