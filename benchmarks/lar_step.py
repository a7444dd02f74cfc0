"""Cached LAR step vs recomputing every position, on a 256x256 LR input, in one run.

Sampling a patch takes 16 positions (8 steps of two codes with ``lar_codes_per_step = 2``). The
shipped ``lar_step.onnx`` computes one step from a
cache of earlier keys/values; the alternative is the teacher-forced ``lar_full`` graph, which
recomputes all positions each step. This measures both on the same machine, same inputs:

    python -m benchmarks.lar_step [--checkpoint runs/larsr-x4/model.pt | --config small] [--size 256]

Weights do not change the cost, so a random ``small`` model measures the shipped architecture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_RESULTS, command_line, machine_info, run_main, write_json


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up: first runs allocate and pick kernels
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(checkpoint: str | None, config: str, size: int, repeats: int, threads: int) -> dict[str, Any]:
    from export.configs import get_config
    from export.model import LarsrModel, load_checkpoint
    from export.to_onnx import export_graph, past_names
    from larsr_cli.sessions import open_session, parse_device

    if checkpoint:
        model, _ = load_checkpoint(Path(checkpoint))
    else:
        model = LarsrModel(get_config(config))
    cfg = model.cfg
    with tempfile.TemporaryDirectory() as tmp:
        paths = {g: export_graph(model.eval(), g, Path(tmp) / f"{g}.onnx") for g in ("lar_step", "lar_full")}
        cpu = parse_device("cpu")
        step = open_session(paths["lar_step"], cpu, threads)
        full = open_session(paths["lar_full"], cpu, threads)
        rng = np.random.default_rng(0)
        h2 = 2 * size
        hp = h2 // cfg.patch_size
        tokens = model.lar.tokens
        xc = rng.random((1, 3, 4 * size, 4 * size), dtype=np.float32)
        indices = rng.integers(0, cfg.codebook_size, (1, h2, h2), dtype=np.int64)
        feeds = {
            "prev_code": rng.integers(0, cfg.codebook_size, model.lar.prev_code_shape(1, hp, hp)),
            "t": np.array([tokens // 2], dtype=np.int64),
            "cond": rng.random((1, hp, hp, tokens, cfg.lar_features), dtype=np.float32),
            "start": rng.random((1, hp, hp, cfg.lar_features), dtype=np.float32),
        }
        # The model's own layout, half filled (a step reads the tokens before it).
        blank = model.lar.empty_cache(1, hp, hp)
        cache = [a for pair in model.lar.cache_prefix(blank, tokens // 2) for a in pair]
        for name, empty in zip(past_names(cfg.lar_layers), cache, strict=True):
            feeds[name] = rng.random(tuple(empty.shape), dtype=np.float32)
        cached = _time(lambda: step.run(None, feeds), repeats)
        recompute = _time(lambda: full.run(None, {"xc": xc, "indices": indices}), max(1, repeats // 2))
    return {
        "lr_size": size,
        "config": cfg.name,
        "cached_step_s": cached,
        "full_recompute_s": recompute,
        "speedup": recompute / cached,
        "note": "full recompute includes the condition encoder, which the cached path runs once per tile",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cached LAR step vs full recompute.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="training checkpoint (default: random weights of --config)")
    src.add_argument("--config", default="small")
    p.add_argument("--size", type=int, default=256, help="LR side in pixels")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = p.parse_args(argv)
    result = measure(args.checkpoint, args.config, args.size, args.repeats, args.threads)
    result["machine"] = machine_info()
    result["command"] = command_line("benchmarks.lar_step", argv)
    write_json(args.out / "lar_step.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
