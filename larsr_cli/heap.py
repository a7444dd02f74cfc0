"""Hand memory freed by a tile back to the OS before the next tile.

glibc keeps what numpy and onnxruntime free in its heap for reuse, and between tiles of different
shapes that reserve only grows: peak RSS, which the tile budget has to bound, then counts every
tile's leftovers. A ``malloc_trim`` after each tile returns the free pages (2560 px output at the
0.85 GB budget: 1197 MiB peak RSS without, 943 MiB with, the same 48.7 s), which is what lets the
default budget hold larger tiles. Only glibc has ``malloc_trim``; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # absent on musl
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


# Where a trim may happen: before a tiled image, after each tile, between the stages of a tile,
# after each structure strip. All of them by default: trimming between tiles only saves the
# refaults of the stages and strips, but was not reliably faster on a 4096 px output (-10% in
# one run, +1-8% in the next) and peaked at 1256-1723 MiB against 1166-1301
# (benchmarks/results/heap_policy_tiles.json).
TRIM_POINTS = ("image", "tile", "stage", "strip")
_trim_points: frozenset[str] = frozenset(TRIM_POINTS)


def set_trim_points(points: Iterable[str]) -> None:
    """Trim only at these points (process-wide): ``benchmarks.heap_policy`` measures what each
    set costs in time and saves in peak RSS."""
    global _trim_points
    chosen = frozenset(points)
    unknown = chosen - set(TRIM_POINTS)
    if unknown:
        raise ValueError(f"unknown trim points {sorted(unknown)}; expected some of {TRIM_POINTS}")
    _trim_points = chosen


def set_trimming(enabled: bool) -> None:
    """All trims on, or none."""
    set_trim_points(TRIM_POINTS if enabled else ())


def release_freed_memory(point: str = "tile") -> bool:
    """Return free heap pages to the OS at ``point`` (one of ``TRIM_POINTS``); True when the C
    library did it."""
    if point not in TRIM_POINTS:
        raise ValueError(f"unknown trim point {point!r}")
    trim = _malloc_trim()
    if trim is None or point not in _trim_points:
        return False
    trim(0)
    return True


# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Free memory at the top of the heap that free() may keep instead of returning it at once: the
# explicit trims between tiles decide when memory goes back, not every large free.
_KEEP_TOP = 1 << 30


@cache
def serve_large_blocks_from_heap() -> bool:
    """Make glibc serve large blocks from its heap, reused from run to run, instead of a fresh
    ``mmap`` per block.

    Why: every onnxruntime tensor above glibc's mmap threshold (at most 32 MB) got new pages from
    the kernel and page-faulted them in, on every run: a 256 px coarse pass faulted 650-1000 MiB
    for a 200 MiB peak, and faults were a third of its time (0.37-0.52 s, 0.25-0.30 s from the
    heap; the condition graph 0.095 -> 0.046 s). Freed heap memory goes back to the OS where
    larsr asks for it (``release_freed_memory`` after every tile and structure window), which is
    what bounds peak RSS. One arena for all threads: with a heap per thread, which blocks went
    where depended on thread timing, and a 4096 px output peaked anywhere from 1237 to 1601 MiB
    from run to run; with one, 1211-1232 MiB. Process-wide and once; True when the C library took
    it (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or _malloc_trim() is None:  # musl has neither; without a trim, keep mmap
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_TOP))
    return all([bool(mallopt(param, value)) for param, value in settings])
