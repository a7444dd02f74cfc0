"""The ``larsr`` console script: signals and start-up interrupts become one line, never a traceback.

Kept apart from ``cli.py`` on purpose: this module imports nothing heavy, so a Ctrl-C while
numpy/onnxruntime/rich are still importing is caught here (it used to print an 18-line traceback),
and SIGTERM/SIGHUP (a closed terminal, ``kill``, a job scheduler) unwind the program like Ctrl-C
does, so every ``atomic_write`` in flight removes its temporary file instead of leaving it behind.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so cleanup handlers and ``finally`` run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # SIGHUP does not exist on Windows
        if sig is not None:
            signal.signal(sig, _raise_terminated)


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) that caused ``exc``: onnxruntime turns one that lands while its
    native module loads into ``ImportError("initialization failed")``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def main() -> None:
    install_signal_handlers()
    try:
        from .cli import main as cli_main
    except (KeyboardInterrupt, ImportError) as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is None:
            raise
        code = 128 + interrupt.signum if isinstance(interrupt, Terminated) else 130
        sys.stderr.write("larsr: interrupted while starting; nothing was written\n")
        raise SystemExit(code) from None
    try:
        cli_main()
    finally:
        # The run is over (outputs written or cleaned up, summary printed): a Ctrl-C during the
        # interpreter's teardown would only turn the exit status into a crash (-2, or 1 from an
        # atexit hook) for work that already finished.
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, signal.SIG_IGN)
