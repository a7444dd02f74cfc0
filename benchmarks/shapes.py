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

# name -> config overrides on ``base``; the first is the shipped shape (larsr-x4 round 6), the rest
# are the candidates for the speed and tiling bars: fewer LAR steps (codes per step), and no patch
# mixing inside the steps (the LAR then reads no neighbouring patches: its tile margin is 0).
SHIPPED_SHAPE: dict[str, Any] = {
    "coarse_features": 32,
    "coarse_growth": 16,
    "coarse_up_features": 16,
    "vq_cosine": True,
    "vq_lr_project": 0,
    "lar_codes_per_step": 2,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "round 6 (shipped): coarse 32/16/16, 2 codes per step": SHIPPED_SHAPE,
    "1 code per step (round 5)": {**SHIPPED_SHAPE, "lar_codes_per_step": 1},
    "4 codes per step": {**SHIPPED_SHAPE, "lar_codes_per_step": 4},
    "2 codes per step, no mixing in the steps": {**SHIPPED_SHAPE, "lar_mix_layers": 0},
    "4 codes per step, no mixing in the steps": {
        **SHIPPED_SHAPE,
        "lar_codes_per_step": 4,
        "lar_mix_layers": 0,
    },
}


def measure(size: int, threads: int, repeats: int, texture: float, tiled: int = 0) -> list[dict[str, Any]]:
    """Each variant's chain and coarse net at ``size`` px, and with ``tiled`` > 0 one ``--tile
    auto`` run of a ``tiled`` px input: its rate over the ``size`` px one is that shape's price
    of tiling (the margins follow the exported receptive fields)."""
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
            cfg = get_config("base").with_overrides(**overrides)
            torch.manual_seed(0)
            folder = Path(tmp) / f"v{index}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model(LarsrModel(cfg).eval(), folder, f"shape-{index}", {}, 0.6, False)
            flops = count(folder)
            up = Upscaler(folder, threads=threads)
            chain = best_seconds(lambda up=up: up.upscale_array(image, seed=0, texture=texture), repeats)
            coarse = best_seconds(lambda up=up: up.coarse_array(image), repeats)
            row = {
                "variant": name,
                "overrides": overrides,
                "flops_per_output_pixel": flops["flops_per_output_pixel"],
                "graphs": flops["graphs"],
                "steps": up.arch.steps(texture),
                "texture_margin_lr_px": up.tile_margin(texture),
                "chain_s_per_mpx": chain / megapixels,
                "coarse_s_per_mpx": coarse / megapixels,
            }
            if tiled:
                big = np.random.default_rng(1).random((tiled, tiled, 3), dtype=np.float32)
                run = lambda up=up, big=big: up.upscale_array(big, seed=0, texture=texture)  # noqa: E731
                seconds = best_seconds(run, 1)
                row["tiled_input"] = tiled
                row["tiles"] = len(up.plan(tiled, tiled, "auto", texture=texture))
                row["tiled_s_per_mpx"] = seconds / ((4 * tiled) ** 2 / 1e6)
                row["tiling_cost"] = row["tiled_s_per_mpx"] / row["chain_s_per_mpx"]
            rows.append(row)
    ref = rows[0]
    for row in rows:
        row["chain_vs_shipped"] = row["chain_s_per_mpx"] / ref["chain_s_per_mpx"]
    return rows


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| shape (random weights) | kFLOP / px | LAR steps | texture margin | s / Mpx | × shipped "
        "| coarse alone s / Mpx | tiled s / Mpx (tiles) | tiling cost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["variants"]:
        tiled = f"{r['tiled_s_per_mpx']:.2f} ({r['tiles']})" if "tiles" in r else "—"
        cost = f"{r['tiling_cost']:.2f}x" if "tiling_cost" in r else "—"
        lines.append(
            f"| {r['variant']} | {r['flops_per_output_pixel'] / 1000:.1f} | {r.get('steps', '—')} "
            f"| {r.get('texture_margin_lr_px', '—')} | {r['chain_s_per_mpx']:.2f} "
            f"| {r['chain_vs_shipped']:.2f} | {r['coarse_s_per_mpx']:.2f} | {tiled} | {cost} |"
        )
    s = data["settings"]
    lines += [
        "",
        f"- {s['size']}² LR -> {4 * s['size']}², T=0.6, texture {s['texture']}, {s['threads']} threads, "
        f"fastest of {s['repeats']} after a warm-up; `{data['command']}`.",
    ]
    if s.get("tiled"):
        lines.append(
            f"- Tiled: one {s['tiled']}² input with --tile auto; tiling cost = its s / Mpx over the "
            f"{s['size']}² rate."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Speed of network shapes before training them.")
    p.add_argument("--size", type=int, default=256, help="LR side in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--texture", type=float, default=0.5)
    p.add_argument("--tiled", type=int, default=768, help="LR side of the --tile auto run (0 = none)")
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
            "tiled": args.tiled,
        },
        "variants": measure(args.size, args.threads, args.repeats, args.texture, args.tiled),
    }
    write_json(args.out / "shapes.json", data)
    print(markdown(data))
    print(json.dumps({"written": str(args.out / "shapes.json")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
