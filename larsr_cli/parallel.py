"""Row-parallel numpy work on a shared thread pool.

numpy releases the GIL in its ufuncs and copies, so the per-step work the runtime does between
onnxruntime calls (drawing codes, writing the key/value cache) runs on as many cores as
onnxruntime itself uses. One pool per worker count lives for the process: a pool per call cost
a thread start per draw, sixteen per tile.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="larsr-rows")


def for_row_blocks(job: Callable[[slice], None], rows: int, block: int, workers: int) -> None:
    """``job(rows_slice)`` over ``range(rows)`` in blocks of ``block`` rows, ``workers`` at a time.

    Small inputs (under two blocks) or one worker run inline: a job must outweigh its hand-off.
    """
    if workers <= 1 or rows < 2 * block:
        job(slice(0, rows))
        return
    starts = range(0, rows, block)
    # list() waits for every block and re-raises the first error a job raised.
    list(_pool(workers).map(lambda start: job(slice(start, start + block)), starts))
