"""Seconds per image of one graph role, fp32 against other files of it (an int8 probe, a re-export).

A probe that fails the quality floor is not listed in any manifest, so ``benchmarks.speed`` cannot
time it; this times the graph files themselves, with the runtime's own session options and heap
settings, on the inputs the role really receives: the feeds the fp32 ``Upscaler`` of ``--model``
gives that role while it upscales a seeded noise image per size (every LAR step of the tile,
with its key/value cache), recorded once and replayed through each file:

    python -m benchmarks.graph_speed models/larsr-x4/coarse.onnx /tmp/probe/coarse.int8.onnx --sizes 256,392
    python -m benchmarks.graph_speed --role lar_step models/larsr-x4/lar_step.onnx /tmp/re/lar_step.onnx

Each row also says whether the file's outputs equal the first file's bit for bit, and by how much
they differ otherwise: a re-export that should only be faster must say ``identical``. (On noise,
far from the calibration photos, an int8 file's difference is larger than on a photo.)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchError, command_line, machine_info, run_main
from larsr_cli.arch import LarSR


def record_role_feeds(model: Path, role: str, size: int) -> list[dict[str, np.ndarray]]:
    """What ``role`` is fed while ``model``'s fp32 chain upscales a seeded ``size`` px noise image."""
    from export.quantize import record_feeds
    from larsr_cli.pipeline import Upscaler

    upscaler = Upscaler(model, device="cpu", precision="fp32")
    lr = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    return record_feeds(upscaler, [lr], [role])[role]


def _outputs(session: Any, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    return [out for feed in feeds for out in session.run(None, feed)]


def _difference(got: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, Any]:
    identical = all(np.array_equal(g, r) for g, r in zip(got, reference, strict=True))
    worst = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got, reference, strict=True))
    return {"identical": identical, "max_abs_diff": worst}


def time_graphs(
    paths: Sequence[Path], role: str, model: Path, sizes: Sequence[int], threads: int, repeats: int
) -> list[dict[str, Any]]:
    """Seconds of each file over all of one image's feeds, per LR side (fastest and median of
    ``repeats`` rounds), and how its outputs compare with the first file's.

    The files take turns within each round, in alternating order, so that a slower minute of a
    shared machine lands on all of them: timed one after the other, the same file read 0.77 s
    first and 0.71 s second."""
    import onnxruntime as ort

    from larsr_cli.heap import serve_large_blocks_from_heap
    from larsr_cli.sessions import session_options

    serve_large_blocks_from_heap()
    names = list(dict.fromkeys(str(p) for p in paths))
    missing = [name for name in names if not Path(name).is_file()]
    if missing:
        raise BenchError(f"no such graph file: {', '.join(missing)}")
    sessions = [
        ort.InferenceSession(name, session_options(threads), providers=["CPUExecutionProvider"])
        for name in names
    ]
    rows = []
    for n in sizes:
        feeds = record_role_feeds(model, role, n)
        for name, session in zip(names, sessions, strict=True):
            wants = sorted(i.name for i in session.get_inputs())
            if wants != sorted(feeds[0]):
                raise BenchError(f"{name}: inputs {', '.join(wants)} are not those of {model}'s {role} graph")
        outputs = [_outputs(session, feeds) for session in sessions]  # also the warm-up
        seconds: list[list[float]] = [[] for _ in sessions]
        for round_ in range(max(1, repeats)):
            order = range(len(sessions)) if round_ % 2 == 0 else reversed(range(len(sessions)))
            for i in order:
                seconds[i].append(seconds_of(partial(_outputs, sessions[i], feeds)))
        for i, name in enumerate(names):
            row = {
                "graph": name,
                "size": n,
                "runs": len(feeds),
                "seconds": round(min(seconds[i]), 4),
                "median_seconds": round(float(np.median(seconds[i])), 4),
            }
            if i:
                row.update(_difference(outputs[i], outputs[0]))
            rows.append(row)
    return rows


def seconds_of(run: Any) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graph_speed", description=__doc__.split("\n")[0])
    p.add_argument("graphs", nargs="+", type=Path, help="ONNX files of one role; the first is the reference")
    p.add_argument(
        "--role", default="coarse", choices=LarSR.graph_roles, help="which graph they are (default coarse)"
    )
    p.add_argument(
        "--model", type=Path, default=Path("models/larsr-x4"), help="model whose feeds are replayed"
    )
    p.add_argument("--sizes", default="256", help="LR sides, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=6, help="rounds (default 6)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = time_graphs(args.graphs, args.role, args.model, sizes, args.threads, args.repeats)
    print(
        json.dumps(
            {
                "command": command_line("benchmarks.graph_speed", argv),
                "machine": machine_info(),
                "role": args.role,
                "rows": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
