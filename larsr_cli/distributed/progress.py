"""The CLI's side: images done and the cluster's rate on the driver's terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .run import ProgressFn


@contextlib.contextmanager
def progress_bar(console: Any, show: bool) -> Iterator[ProgressFn | None]:
    """Images done / total and the cluster's rate, on the driver's stderr (a terminal only)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("images", total=None, rate="")

        def update(done: int, total: int | None, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=f"{rate:.2f} img/s" if rate else "")

        yield update
