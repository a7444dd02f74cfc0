"""Where a tiled image's heap grows: RSS and glibc's heap after every graph run of one image.

Why: ``benchmarks.heap_policy`` says what the trims cost in total; this says which run makes the
heap (glibc's ``mallinfo2``: its size, and the bytes in use when the run has returned) and the
resident set grow, so that an allocation scheme meant to drop the trims can be judged run by run.
A heap that grows only in the first band of tiles and then stays flat reuses its memory; one
that steps up at every band fragments. Each policy runs in a fresh process (the heap's history
is what is measured): a 256 px warm-up, then one 1024 px input with ``--tile auto``; repeated LAR
steps of one tile are shown once.

    python -m benchmarks.heap_trace [--trims on,off] [--size 1024] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_RESULTS,
    BenchError,
    child_report,
    command_line,
    log,
    machine_info,
    run_main,
    write_json,
    write_text,
)
from benchmarks.heap_policy import MODEL

MIB = 1 << 20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap_reader() -> Any:
    """``() -> (heap MiB, in use MiB)`` from glibc's mallinfo2 (glibc 2.33+)."""
    libc = ctypes.CDLL(None)
    info = getattr(libc, "mallinfo2", None)
    if info is None:
        raise BenchError("this C library has no mallinfo2 (glibc 2.33+ needed)")
    info.restype = _Mallinfo2

    def read() -> tuple[int, int]:
        m = info()
        return m.arena // MIB, m.uordblks // MIB

    return read


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def trace_image(upscaler: Any, lr: np.ndarray) -> list[dict[str, Any]]:
    """Upscale ``lr`` with ``--tile auto``, noting RSS and the heap after every graph run
    (``benchmarks.speed.observed_sessions``)."""
    from benchmarks.speed import observed_sessions

    trace: list[tuple[str, int, int, int]] = []
    heap = _heap_reader()

    def note(role: str, seconds: float) -> None:
        trace.append((role, _rss_mib(), *heap()))

    with observed_sessions(upscaler, note):
        upscaler.upscale_array(lr, tile="auto", out_dtype=np.uint8)
    rows = []
    for i, (role, rss, arena, used) in enumerate(trace):
        if role == "lar_step" and i + 1 < len(trace) and trace[i + 1][0] == "lar_step":
            continue  # a tile's steps: the last one stands for them
        rows.append({"run": role, "rss_mib": rss, "heap_mib": arena, "in_use_mib": used})
    return rows


def child(trims: bool, size: int, threads: int) -> dict[str, Any]:
    """One policy in this process: the trace of one tiled image after a warm-up."""
    from benchmarks.common import open_upscaler
    from benchmarks.speed import make_input, source_photo
    from larsr_cli.heap import set_trimming

    set_trimming(trims)
    upscaler = open_upscaler(MODEL, threads, precision="fp32")
    src = source_photo("data/photos", [])
    if src is None:
        raise SystemExit("no photos: python -m export.data fetch data")
    upscaler.upscale_array(make_input(src, 256).astype(np.float32) / 255.0, tile="auto")
    rows = trace_image(upscaler, make_input(src, size).astype(np.float32) / 255.0)
    return {"trims": trims, "tiles": len(upscaler.plan(size, size, "auto")), "rows": rows}


def _name(policy: dict[str, Any]) -> str:
    return "on" if policy["trims"] else "off"


def markdown(result: dict[str, Any]) -> str:
    policies = result["policies"]
    lines = [
        f"## Heap after every graph run (`benchmarks.heap_trace`), {result['size']} px input, --tile auto",
        "",
        "One fresh process per policy, after a 256 px warm-up; MiB: resident set, glibc heap, heap "
        "in use once the run has returned. A tile's LAR steps are shown once (after its last).",
        "",
        "| # | run | " + " | ".join(f"trims {_name(p)}: RSS / heap / in use" for p in policies) + " |",
        "| ---: | --- |" + " ---: |" * len(policies),
    ]
    for i in range(max(len(p["rows"]) for p in policies)):
        cells = []
        role = ""
        for p in policies:
            if i < len(p["rows"]):
                r = p["rows"][i]
                role = role or r["run"]
                cells.append(f"{r['rss_mib']} / {r['heap_mib']} / {r['in_use_mib']}")
            else:
                cells.append("")
        lines.append(f"| {i + 1} | {role} | " + " | ".join(cells) + " |")
    m = result["machine"]
    lines += [
        "",
        "Tiles: " + ", ".join(f"trims {_name(p)} {p['tiles']}" for p in policies) + ".",
        f"Machine: {m.get('cpu_model')}; flags {', '.join(m.get('cpu_flags') or [])}; {result['date']}.",
        f"Command: `{result['command']}`.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.heap_trace", description=__doc__.split("\n")[0])
    p.add_argument("--trims", default="on,off", help="policies, comma-separated: on, off")
    p.add_argument("--size", type=int, default=1024, help="LR side of the traced input")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    policies = [t.strip() for t in args.trims.split(",") if t.strip()]
    if not policies or any(t not in ("on", "off") for t in policies):
        p.error(f"--trims {args.trims!r}: expected on, off or both")
    if args.size < 64:
        p.error(f"--size {args.size}: expected at least 64")
    args.policies = policies
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child == "on", args.size, args.threads)))
        return 0
    policies = []
    for trims in args.policies:
        log(f"heap_trace: trims {trims}, {args.size} px")
        child_args = ["--child", trims, "--size", str(args.size), "--threads", str(args.threads)]
        policies.append(child_report("benchmarks.heap_trace", child_args, f"trims-{trims}"))
    result = {
        "kind": "heap_trace",
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line("benchmarks.heap_trace", argv),
        "machine": machine_info(),
        "size": args.size,
        "policies": policies,
    }
    text = markdown(result)
    print(text)
    write_json(args.out / "heap_trace.json", result)
    write_text(args.out / "heap_trace.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
