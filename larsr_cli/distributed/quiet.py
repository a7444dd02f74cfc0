"""Ray's own output in the CLI: its loggers, its prints and its C++ core's log lines, all
silenced unless ``--debug``."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

_NOISY_LOGGERS = ("ray", "ray.data", "ray.util", "ray._private")


class _Drop(io.TextIOBase):
    """Where Ray's own prints to stdout go in the CLI: nowhere (``--json`` owns stdout)."""

    def write(self, text: str) -> int:
        return len(text)


_NATIVE_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")
"""How Ray's C++ core starts a log line: ``[2026-12-01 11:53:08,139 E 2164 2164] file.cc:12: ...``."""


@contextlib.contextmanager
def _native_log_filter() -> Iterator[None]:
    """Drop the log lines Ray's C++ core writes straight to file descriptor 2.

    They bypass Python (so no logger level silences them), and one is printed on every run
    ("constructor arguments in the object store and max_restarts > 0"). File descriptor 2 goes
    to a pipe whose other lines are passed on untouched; Python's own ``sys.stderr``, when it is
    that descriptor, writes to the real stream directly, so the progress bar and the one-line
    errors never wait in the pipe.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not _NATIVE_LOG_LINE.match(line):
                    os.write(original, line + b"\n")
        if pending and not _NATIVE_LOG_LINE.match(pending):
            os.write(original, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="larsr-ray-stderr", daemon=True)
    thread.start()
    swapped = None
    with contextlib.suppress(Exception):
        if sys.stderr.fileno() == 2:
            swapped = sys.stderr
            sys.stderr = io.TextIOWrapper(
                io.FileIO(original, "w", closefd=False),
                encoding=swapped.encoding,
                errors=swapped.errors,
                line_buffering=True,
                write_through=True,
            )
    try:
        yield
    finally:
        if swapped is not None:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            sys.stderr = swapped
        os.dup2(original, 2)  # closes the pipe's last write end here: the pump sees EOF
        thread.join(timeout=2)
        os.close(original)


@contextlib.contextmanager
def quiet_ray_output(enabled: bool) -> Iterator[None]:
    """Ray logs lost workers and its own retries as tracebacks on stderr, its C++ core writes log
    lines of its own, and raylet messages are printed on stdout; the CLI reports the outcome in
    one line instead (``--debug`` shows them all)."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with _native_log_filter(), contextlib.redirect_stdout(_Drop()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # Ray's tips and deprecations
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
