"""What a page fault costs on this machine: fresh memory, memory just handed back, and memory
handed back a while ago, with 4 KB pages and with transparent huge pages.

Why: larsr bounds its peak RSS by giving freed heap pages back to the OS between tiles and stages
(``larsr_cli.heap.release_freed_memory``), and every page given back is faulted in again by the
next stage that needs it. This measures the three rates with a 1 GiB numpy array (one write per
page), so that the kernel time of a tiled run (``kernel s`` in the memory table) can be read
against them, twice: as larsr allocates (numpy's huge-page marking off,
``larsr_cli.heap.keep_numpy_off_huge_pages``) and as numpy does by default (arrays of 4 MB and up
marked ``MADV_HUGEPAGE``). Until this split, the recorded rates were the huge-page ones and were
read as the VM's cost of backing reclaimed memory anew; on the 2-core EPYC VM the huge pages
were the slow part (0.1-0.2 GB/s fresh, against ~2 GB/s with 4 KB pages).

    python -m benchmarks.refault [--mib 1024] [--pause 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_RESULTS, machine_info, write_json

PAGE = 4096


def touch_gb_per_s(nbytes: int) -> float:
    """GB/s of faulting in ``nbytes`` of new anonymous memory, one write per page; the array is
    freed (and its mapping unmapped: numpy's large arrays are their own mmap here) on return."""
    start = time.perf_counter()
    block = np.empty(nbytes, dtype=np.uint8)
    block[::PAGE] = 1
    seconds = time.perf_counter() - start
    del block
    gc.collect()
    return nbytes / seconds / 1e9


def rates(nbytes: int, pause: float) -> dict[str, float]:
    first = touch_gb_per_s(nbytes)  # pages this process never had
    again = touch_gb_per_s(nbytes)  # the pages just handed back, at once
    time.sleep(pause)
    later = touch_gb_per_s(nbytes)  # the same amount after ``pause`` seconds
    return {
        "first_touch": round(first, 3),
        "right_after_free": round(again, 3),
        "after_pause": round(later, 3),
    }


# Page kinds measured, in order: (key, numpy's huge-page marking, label in the table).
PAGE_KINDS = (
    ("small_pages", False, "4 KB pages (larsr)"),
    ("huge_pages", True, "huge pages (numpy's default)"),
)


def measure(mib: int, pause: float) -> dict[str, Any]:
    from larsr_cli.heap import set_numpy_huge_pages

    nbytes = mib * 2**20
    measured: dict[str, dict[str, float]] = {}
    before = None
    try:
        for key, huge, _ in PAGE_KINDS:
            replaced = set_numpy_huge_pages(huge)
            if replaced is None:
                raise SystemExit("this numpy has no huge-page switch to measure both page kinds")
            before = replaced if before is None else before
            measured[key] = rates(nbytes, pause)
    finally:
        if before is not None:  # the process's own setting again, for whatever runs next in it
            set_numpy_huge_pages(before)
    return {"mib": mib, "pause_s": pause, "gb_per_s": measured}


def markdown(data: dict[str, Any]) -> str:
    r = data["gb_per_s"]
    kinds = [(key, label) for key, _, label in PAGE_KINDS if key in r]
    rows = [
        "| memory | " + " | ".join(f"GB/s, {label}" for _, label in kinds) + " |",
        "| --- |" + " ---: |" * len(kinds),
    ]
    for what, field in (
        ("never touched by this process", "first_touch"),
        ("handed back to the OS, touched again at once", "right_after_free"),
        (f"handed back, touched again {data['pause_s']:g} s later", "after_pause"),
    ):
        rows.append(f"| {what} | " + " | ".join(f"{r[key][field]:.2f}" for key, _ in kinds) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refault", description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="memory per measurement (default 1024)")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds before the last touch (default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if args.mib < 1 or args.pause < 0:
        parser.error("--mib must be at least 1 and --pause at least 0")
    data = {"kind": "refault", "command": "python -m benchmarks.refault", "machine": machine_info()}
    data.update(measure(args.mib, args.pause))
    print(markdown(data))
    write_json(args.out / "refault.json", data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
