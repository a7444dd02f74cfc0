"""Seconds per run of one graph role, fp32 against other files of it (an int8 probe, a re-export).

A probe that fails the quality floor is not listed in any manifest, so ``benchmarks.speed`` cannot
time it; this times the graph files themselves, with the runtime's own session options and heap
settings, on the same random input:

    python -m benchmarks.graph_speed models/larsr-x4/coarse.onnx /tmp/probe/coarse.int8.onnx --sizes 256,392
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import best_seconds, command_line, machine_info, run_main


def time_graphs(
    paths: Sequence[Path], sizes: Sequence[int], threads: int, repeats: int
) -> list[dict[str, Any]]:
    """Best seconds of each graph per LR side; the graph's one image input is fed ``(1, 3, n, n)``."""
    import onnxruntime as ort

    from larsr_cli.heap import serve_large_blocks_from_heap
    from larsr_cli.sessions import session_options

    serve_large_blocks_from_heap()
    sessions = {
        str(p): ort.InferenceSession(str(p), session_options(threads), providers=["CPUExecutionProvider"])
        for p in paths
    }
    rows = []
    for n in sizes:
        image = np.random.default_rng(0).random((1, 3, n, n), dtype=np.float32)
        for name, session in sessions.items():
            feed = {session.get_inputs()[0].name: image}
            seconds = best_seconds(lambda s=session, f=feed: s.run(None, f), repeats)
            rows.append({"graph": name, "size": n, "seconds": round(seconds, 4)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graph_speed", description=__doc__.split("\n")[0])
    p.add_argument("graphs", nargs="+", type=Path, help="ONNX files of one role (image input)")
    p.add_argument("--sizes", default="256", help="LR sides, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = time_graphs(args.graphs, sizes, args.threads, args.repeats)
    print(
        json.dumps(
            {
                "command": command_line("benchmarks.graph_speed", argv),
                "machine": machine_info(),
                "rows": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
