"""The protocol every peer runner speaks, so the harness can time peers side by side.

``python RUNNER IN_DIR OUT_DIR [--repeats N] [--threads N]``: every ``*.png`` of IN_DIR is upscaled
and written under the same name to OUT_DIR; the last stdout line is one JSON object with the
per-image seconds. The model is loaded and warmed up on a small image before any timing, so the
seconds measure steady-state inference only (load time is reported as ``load_s``).

This file runs inside the peers' own venvs (numpy<2, pillow<11, torch...), so it imports nothing
from larsr and only the standard library, numpy and Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Upscale = Callable[[Any, Image.Image], Image.Image]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("in_dir", type=Path, help="folder of input PNGs")
    parser.add_argument("out_dir", type=Path, help="folder for the x4 PNGs (same names)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per image (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run")
    return parser.parse_args()


def _warmup_image() -> Image.Image:
    """A small deterministic image: first inference allocates buffers and picks kernels."""
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8))


def run(
    peer: str,
    version: str,
    load: Callable[[int | None], Any],
    upscale: Upscale,
    extra: dict[str, Any] | None = None,
) -> int:
    """Load the model, warm it up, upscale every PNG, print the JSON report; returns the exit code."""
    args = parse_args(f"{peer}: upscale every PNG in a folder x4 on the CPU")
    if not args.in_dir.is_dir():
        print(f"error: input folder not found: {args.in_dir}", file=sys.stderr)
        return 2
    inputs = sorted(args.in_dir.glob("*.png"))
    if not inputs:
        print(f"error: no PNG files in {args.in_dir}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = load(args.threads)
    load_s = time.perf_counter() - start
    if not args.no_warmup:
        upscale(model, _warmup_image())
    seconds: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    for path in inputs:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            out = upscale(model, rgb)
            times.append(round(time.perf_counter() - t0, 4))
        out.save(args.out_dir / path.name, format="PNG", compress_level=1)
        seconds[path.name] = times
        sizes[path.name] = [out.width, out.height]
    report = {
        "peer": peer,
        "version": version,
        "device": "cpu",
        "threads": args.threads or os.cpu_count(),
        "load_s": round(load_s, 3),
        "warmup": not args.no_warmup,
        "seconds": seconds,
        "output_size": sizes,
        **(extra or {}),
    }
    print(json.dumps(report), flush=True)
    return 0
