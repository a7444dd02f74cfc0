"""Hand memory freed by a tile back to the OS before the next tile, once the process holds much.

glibc keeps what numpy and onnxruntime free in its heap for reuse, and between tiles of different
shapes that reserve only grows: peak RSS, which the tile budget has to bound, then counts every
tile's leftovers. A ``malloc_trim`` after each tile returns the free pages (2560 px output at the
0.85 GB budget: 1197 MiB peak RSS without, 943 MiB with, the same 48.7 s), which is what lets the
default budget hold larger tiles. Only glibc has ``malloc_trim``; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
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


# A trim point hands memory back only while the process holds more than this. Why: every page a
# trim returns is page-faulted in again by the next stage (zeroed by the kernel, 2 MB at a time
# while numpy marked the heap for huge pages: ``keep_numpy_off_huge_pages``), and most of a tiled
# run's kernel time was that. Below the mark the freed pages stay in the heap for the next stage
# to reuse; above it the trim bounds
# peak RSS as before. 4096 px output (1024 px input, 12 tiles) on a 2-core EPYC: the CLI ran 23.1-
# 23.7 s at 1020-1069 MiB peak with an 800 MiB mark, against 25.6 s at 937 MiB trimming at every
# point. benchmarks.heap_policy --marks 0,800 --pairs 2 --mixed (results/heap_policy_marks.md),
# alternating fresh processes: 1024 px input 1.273 / 1.554 s per output Mpx against 1.486 / 1.652,
# kernel s 3.9-7.1 against 7.6-9.8; a long-lived sequence that then met other shapes peaked at
# 1351 / 1435 against 1383 / 1328 MiB: under the 1.5 GB bar.
TRIM_ABOVE_BYTES = 800 * 2**20
_trim_above = TRIM_ABOVE_BYTES


def set_trim_above(rss_bytes: int) -> None:
    """Trim only while the resident set exceeds ``rss_bytes`` (process-wide; 0 trims at every
    point): ``benchmarks.heap_policy --marks`` compares marks."""
    global _trim_above
    if rss_bytes < 0:
        raise ValueError("the trim mark must be 0 or more bytes")
    _trim_above = int(rss_bytes)


def resident_bytes() -> int | None:
    """This process's resident set now (Linux ``/proc/self/statm``), None where unreadable."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * page_bytes()
    except (OSError, ValueError, IndexError):
        return None


@cache
def page_bytes() -> int:
    """Bytes per page, for turning page counts (``statm``, page faults) into bytes; 4096 where
    the OS does not say (the page size of every platform larsr runs on without ``sysconf``)."""
    return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def release_freed_memory(point: str = "tile") -> bool:
    """Return free heap pages to the OS at ``point`` (one of ``TRIM_POINTS``) when the process
    holds more than the trim mark (``set_trim_above``); True when the C library did it."""
    if point not in TRIM_POINTS:
        raise ValueError(f"unknown trim point {point!r}")
    trim = _malloc_trim()
    if trim is None or point not in _trim_points:
        return False
    if _trim_above:
        rss = resident_bytes()
        if rss is not None and rss <= _trim_above:
            return False  # what is free stays for the next stage: no refaults, RSS still low
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


# numpy asks the kernel for transparent huge pages (madvise MADV_HUGEPAGE) on every array of
# 4 MB or more, and the mark stays on that stretch of the heap after the array is freed, so the
# onnxruntime tensors that reuse it get huge pages too. Each fault then zeroes (and in a VM, backs)
# a whole 2 MB page: a fresh 512 MB numpy array faulted in at 0.10-0.17 GB/s here against 1.9-2.4
# GB/s with 4 KB pages, and every page a trim hands back is faulted in again that way. Huge pages
# only pay where memory stays mapped (9 GB/s touched again at once), which a bounded RSS forbids.
NUMPY_HUGE_PAGES_ENV = "NUMPY_MADVISE_HUGEPAGE"


def set_numpy_huge_pages(enabled: bool) -> bool | None:
    """numpy's own switch for marking large arrays (process-wide): ``benchmarks.heap_policy
    --huge-pages`` compares both. Returns the setting it replaced, so that a caller can put it
    back, or None when the switch is missing: it is private (numpy has no public one), and a
    numpy without it keeps its default."""
    import numpy as np

    for module in ("_core", "core"):  # numpy 2, numpy 1
        multiarray = getattr(getattr(np, module, None), "multiarray", None)
        switch = getattr(multiarray, "_set_madvise_hugepage", None)
        if switch is not None:
            return bool(switch(bool(enabled)))
    return None


def keep_numpy_off_huge_pages() -> bool:
    """Stop numpy marking large arrays for huge pages, unless the user chose with numpy's own
    ``NUMPY_MADVISE_HUGEPAGE``; True when larsr switched it off."""
    if os.environ.get(NUMPY_HUGE_PAGES_ENV) is not None:
        return False
    return set_numpy_huge_pages(False) is not None
