"""What a network shape would cost on this CPU, before anyone trains it.

Weights do not change the cost of a graph, so random weights of a config variant, exported with
the real exporter and run by the real runtime, measure the speed a trained model of that shape
would have. This is how the next model's shape is chosen against the speed bars (benchmarks/
RESULTS.md): FLOPs per output pixel and seconds per output Mpx, whole chain and coarse net alone,
all variants in one run, ratios against the shipped shape.

    python -m benchmarks.shapes [--size 256] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_RESULTS, best_seconds, command_line, machine_info, run_main, write_json
from benchmarks.flops import count

# name -> config overrides on the shipped config (``base``, with its export-time projection).
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped shape (coarse 40/20/24, 2 RRDB)": {},
    "coarse 32/16/16, 2 RRDB (channels in 16s)": {
        "coarse_features": 32,
        "coarse_growth": 16,
        "coarse_up_features": 16,
    },
    "coarse 48/16/16, 1 RRDB": {
        "coarse_features": 48,
        "coarse_growth": 16,
        "coarse_up_features": 16,
        "coarse_blocks": 1,
    },
    "coarse 32/16/16 + LAR 32 features": {
        "coarse_features": 32,
        "coarse_growth": 16,
        "coarse_up_features": 16,
        "lar_features": 32,
    },
}


def measure(size: int, threads: int, repeats: int, texture: float) -> list[dict[str, Any]]:
    import torch

    from export.configs import get_config
    from export.model import LarsrModel
    from export.to_onnx import export_model
    from larsr_cli.pipeline import Upscaler

    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    megapixels = (4 * size) ** 2 / 1e6
    rows = []
    with tempfile.TemporaryDirectory(prefix="larsr-shapes-") as tmp:
        for index, (name, overrides) in enumerate(VARIANTS.items()):
            cfg = get_config("base").with_overrides(vq_lr_project=2, **overrides)
            torch.manual_seed(0)
            folder = Path(tmp) / f"v{index}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model(LarsrModel(cfg).eval(), folder, f"shape-{index}", {}, 0.6, False)
            flops = count(folder)
            up = Upscaler(folder, threads=threads)
            chain = best_seconds(lambda up=up: up.upscale_array(image, seed=0, texture=texture), repeats)
            coarse = best_seconds(lambda up=up: up.coarse_array(image), repeats)
            rows.append(
                {
                    "variant": name,
                    "overrides": overrides,
                    "flops_per_output_pixel": flops["flops_per_output_pixel"],
                    "graphs": flops["graphs"],
                    "chain_s_per_mpx": chain / megapixels,
                    "coarse_s_per_mpx": coarse / megapixels,
                }
            )
    ref = rows[0]
    for row in rows:
        row["chain_vs_shipped"] = row["chain_s_per_mpx"] / ref["chain_s_per_mpx"]
    return rows


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| shape (random weights) | kFLOP / px | coarse kFLOP | s / Mpx | × shipped | coarse alone s / Mpx |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["variants"]:
        lines.append(
            f"| {r['variant']} | {r['flops_per_output_pixel'] / 1000:.1f} "
            f"| {r['graphs']['coarse'] / 1000:.1f} | {r['chain_s_per_mpx']:.2f} "
            f"| {r['chain_vs_shipped']:.2f} | {r['coarse_s_per_mpx']:.2f} |"
        )
    s = data["settings"]
    lines += [
        "",
        f"- {s['size']}² LR -> {4 * s['size']}², T=0.6, texture {s['texture']}, {s['threads']} threads, "
        f"fastest of {s['repeats']} after a warm-up; `{data['command']}`.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Speed of network shapes before training them.")
    p.add_argument("--size", type=int, default=256, help="LR side in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--texture", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = p.parse_args(argv)
    data = {
        "kind": "shapes",
        "command": command_line("benchmarks.shapes", argv),
        "machine": machine_info(),
        "settings": {
            "size": args.size,
            "threads": args.threads,
            "repeats": args.repeats,
            "texture": args.texture,
        },
        "variants": measure(args.size, args.threads, args.repeats, args.texture),
    }
    write_json(args.out / "shapes.json", data)
    print(markdown(data))
    print(json.dumps({"written": str(args.out / "shapes.json")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
