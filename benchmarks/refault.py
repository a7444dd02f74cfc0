"""What a page fault costs on this machine: fresh memory, memory just handed back, and memory
handed back a while ago.

Why: larsr bounds its peak RSS by giving freed heap pages back to the OS between tiles and stages
(``larsr_cli.heap.release_freed_memory``), and every page given back is faulted in again by the
next stage that needs it. On bare metal that costs the kernel zeroing pages (several GB/s); in a
virtual machine whose host reclaims the pages a guest has freed (virtio free page reporting,
which reports free memory after about two seconds), a page faulted in again is backed anew by
the host, an order of magnitude slower. This measures the three rates with a 1 GiB numpy array
(one write per page), so that the kernel time of a tiled run (``kernel s`` in the memory table)
can be read against them.

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


def measure(mib: int, pause: float) -> dict[str, Any]:
    nbytes = mib * 2**20
    first = touch_gb_per_s(nbytes)  # pages this process never had
    again = touch_gb_per_s(nbytes)  # the pages just handed back, at once
    time.sleep(pause)
    later = touch_gb_per_s(nbytes)  # the same amount after ``pause`` seconds
    return {
        "mib": mib,
        "pause_s": pause,
        "gb_per_s": {
            "first_touch": round(first, 3),
            "right_after_free": round(again, 3),
            "after_pause": round(later, 3),
        },
    }


def markdown(data: dict[str, Any]) -> str:
    r = data["gb_per_s"]
    rows = [
        "| memory | GB/s faulted in |",
        "| --- | ---: |",
        f"| never touched by this process | {r['first_touch']:.2f} |",
        f"| handed back to the OS, touched again at once | {r['right_after_free']:.2f} |",
        f"| handed back, touched again {data['pause_s']:g} s later | {r['after_pause']:.2f} |",
    ]
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
