"""Freed tile memory goes back to the OS, so peak RSS counts one tile, not the leftovers of all."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from larsr_cli.heap import TRIM_ABOVE_BYTES, release_freed_memory, set_trim_above


@pytest.fixture(autouse=True)
def trim_at_every_point() -> Iterator[None]:
    """This test process holds far less than the default trim mark, below which trims are
    skipped on purpose; the tests here ask what a trim does, so they trim whatever the RSS."""
    set_trim_above(0)
    yield
    set_trim_above(TRIM_ABOVE_BYTES)


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_are_returned_to_the_os() -> None:
    # 48 KB blocks live in the heap (below the mmap threshold); one block allocated after them
    # stays alive, so free() alone cannot shrink the heap from the top.
    blocks = [np.ones(12_000, dtype=np.float32) for _ in range(4000)]  # ~190 MB, touched
    pin = np.ones(12_000, dtype=np.float32)
    del blocks
    before = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert before - after > 100, (before, after)
    assert pin.sum() == 12_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_below_the_trim_mark_freed_pages_stay_for_the_next_stage() -> None:
    """A trim point hands memory back only while the process holds more than the mark: below
    it the freed pages stay resident (no refaults for the next stage); above it they go."""
    blocks = [np.ones(12_000, dtype=np.float32) for _ in range(4000)]  # ~190 MB, touched
    pin = np.ones(12_000, dtype=np.float32)
    del blocks
    before = _rss_mib()
    set_trim_above(int((before + 500) * 2**20))  # the process is below this mark
    try:
        assert not release_freed_memory()
        kept = _rss_mib()
        assert before - kept < 20, (before, kept)
        set_trim_above(int((kept - 100) * 2**20))  # now above it
        assert release_freed_memory()
    finally:
        set_trim_above(0)
    assert kept - _rss_mib() > 100
    assert pin.sum() == 12_000
    with pytest.raises(ValueError):
        set_trim_above(-1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_blocks_come_back_from_the_heap_without_new_page_faults() -> None:
    """After ``serve_large_blocks_from_heap`` a freed 64 MB block is reused: allocating it again
    faults almost no new pages (an mmap per block would fault all 16384 of them every time)."""
    import resource

    from larsr_cli.heap import serve_large_blocks_from_heap

    assert serve_large_blocks_from_heap()
    block = np.ones(16 << 20, dtype=np.float32)
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(16 << 20, dtype=np.float32)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert block.sum() == 16 << 20
    assert faults < 2000, faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_with_trimming_off_freed_pages_stay_in_the_process() -> None:
    """``benchmarks.heap_policy`` compares runs with the trims off: then nothing goes back."""
    from larsr_cli.heap import set_trimming

    blocks = [np.ones(12_000, dtype=np.float32) for _ in range(4000)]
    pin = np.ones(12_000, dtype=np.float32)
    del blocks
    set_trimming(False)
    try:
        before = _rss_mib()
        assert not release_freed_memory()
        assert before - _rss_mib() < 20
    finally:
        set_trimming(True)
    assert release_freed_memory()
    assert pin.sum() == 12_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trims_happen_only_at_the_points_asked_for() -> None:
    """``benchmarks.heap_policy``'s ``tiles`` policy trims between tiles but not between the
    stages of a tile or after structure strips; a misspelt point is an error, not a silent no-op."""
    from larsr_cli.heap import TRIM_POINTS, set_trim_points

    set_trim_points(("image", "tile"))
    try:
        assert release_freed_memory("tile") and release_freed_memory("image")
        assert not release_freed_memory("stage") and not release_freed_memory("strip")
        with pytest.raises(ValueError, match="unknown trim point"):
            release_freed_memory("tiles")
        with pytest.raises(ValueError, match="unknown trim points"):
            set_trim_points(("band",))
    finally:
        set_trim_points(TRIM_POINTS)
    assert release_freed_memory("strip")


HUGE_PAGE_PROBE = """
import sys, numpy as np
from larsr_cli.heap import keep_numpy_off_huge_pages
switched = keep_numpy_off_huge_pages() if sys.argv[1] == "off" else None
if sys.argv[1] == "upscaler":
    from larsr_cli.pipeline import Upscaler

    Upscaler.from_pretrained("larsr-x4", verify=False)
block = np.ones(16 << 20, dtype=np.float32)  # 64 MB: numpy marks 4 MB and up
address = block.ctypes.data + block.nbytes // 2  # numpy marks the 2 MB-aligned inside
flags, inside = None, False
for line in open("/proc/self/smaps"):
    head = line.split()
    if "-" in head[0] and ":" not in head[0]:
        lo, hi = (int(x, 16) for x in head[0].split("-"))
        inside = lo <= address < hi
    elif inside and line.startswith("VmFlags:"):
        flags = head[1:]
print(switched, "hg" in flags)
"""


def _huge_page_probe(mode: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    import os
    import subprocess

    run_env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    run_env.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", HUGE_PAGE_PROBE, mode], capture_output=True, text=True, env=run_env, check=True
    )
    switched, marked = out.stdout.split()
    return switched, marked


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux's per-mapping flags")
def test_large_arrays_are_not_marked_for_huge_pages() -> None:
    """Huge pages make every fault of a handed-back page zero 2 MB (0.1-0.2 GB/s in this VM
    against ~2 GB/s): the Upscaler's memory policy turns numpy's marking off, unless the user set
    numpy's own switch."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("this kernel has no transparent huge pages to mark")
    assert _huge_page_probe("default") == ("None", "True")  # numpy's default: the test can fail
    assert _huge_page_probe("off") == ("True", "False")
    assert _huge_page_probe("upscaler") == ("None", "False")  # opening a model is enough
    # The user's explicit choice wins: larsr leaves numpy's switch alone.
    assert _huge_page_probe("off", {"NUMPY_MADVISE_HUGEPAGE": "1"}) == ("False", "True")
