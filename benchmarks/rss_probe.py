"""Run a command and print its wall time, peak RSS and CPU split as one JSON line (stdlib only).

Why a separate small process: a child forked from the (large) benchmark process starts with the
parent's resident pages counted in its high-water mark, so ``ru_maxrss`` of a direct child reports
the benchmark's own size whenever that is the larger. Forked from this small probe instead, the
child's peak is its own. ``os.wait4`` reads the rusage of that one child, unlike RUSAGE_CHILDREN's
running maximum over all children.

    python benchmarks/rss_probe.py larsr upscale in.png -o out.png
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: rss_probe.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    except OSError as exc:
        print(f"error: cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 2
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    report = {
        "rc": proc.returncode,
        "wall_s": wall,
        "maxrss_kib": usage.ru_maxrss,
        # Kernel time and minor page faults: what handing memory back and faulting it in again
        # costs (benchmarks/refault.py measures the rate on this machine).
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
