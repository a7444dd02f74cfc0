"""Score an exported model folder on the validation split and choose its default temperature.

``python -m export.evaluate --model models/larsr-x4 --data data/photos [--write]``

Runs the ONNX graphs through the real runtime (``larsr_cli.pipeline.Upscaler``), so the numbers
describe what users get. For each validation photo (centre crop): bicubic, the coarse SR alone,
T = 0, and a sweep of temperatures over seeds 0..2. The default temperature is the one with the best
LPIPS whose LR-consistency stays acceptable (>= 40 dB); ``--write`` stores it and the metrics in the
manifest (the sha256 of the graphs do not change).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from larsr_cli.manifest import load_manifest, write_manifest
from larsr_cli.pipeline import Upscaler

from .data import make_pair, val_images
from .degrade import lr_consistency_db
from .lpips import LPIPS
from .metrics import psnr_y, ssim_y

SEEDS = (0, 1, 2)
TEMPERATURES = (0.0, 0.3, 0.5, 0.7, 0.85, 1.0)
MIN_LR_CONSISTENCY_DB = 40.0


def bicubic_up(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    h, w = lr.shape[:2]
    return np.clip(cv2.resize(lr, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0, 1)


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()


class Scorer:
    def __init__(self) -> None:
        self.lpips = LPIPS.from_converted("alex")

    @torch.no_grad()
    def __call__(self, sr: np.ndarray, hr: np.ndarray, lr: np.ndarray) -> dict[str, float]:
        sr = np.clip(sr, 0.0, 1.0)
        return {
            "psnr_y": psnr_y(sr, hr),
            "ssim_y": ssim_y(sr, hr),
            "lpips": float(self.lpips(_tensor(sr), _tensor(hr))[0]),
            "lr_consistency_db": lr_consistency_db(sr, lr),
        }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def evaluate(model: Path, data: Path, max_side: int, temperatures: tuple[float, ...]) -> dict:
    upscaler = Upscaler(model)
    score = Scorer()
    per_method: dict[str, list[dict[str, float]]] = {}
    diversity: dict[str, list[float]] = {}
    photos = val_images(data, max_side=max_side)
    for name, hr in photos:
        lr, _ = make_pair(hr)
        per_method.setdefault("bicubic", []).append(score(bicubic_up(lr), hr, lr))
        xc = upscaler.sessions["coarse"].run(None, {"lr": _tensor(lr).numpy()})[0][0].transpose(1, 2, 0)
        per_method.setdefault("coarse", []).append(score(xc, hr, lr))
        for t in temperatures:
            seeds = (0,) if t == 0 else SEEDS
            outs = [
                upscaler.upscale_array(lr, seed=s, temperature=t, tile=0, out_dtype=np.float32) for s in seeds
            ]
            key = f"T={t:g}"
            per_method.setdefault(key, []).extend(score(o, hr, lr) for o in outs)
            if len(outs) > 1:
                diversity.setdefault(key, []).append(float(np.std(np.stack(outs), axis=0).mean()))
        print(json.dumps({"photo": name, "done": True}), flush=True)
    summary = {key: _mean(rows) for key, rows in per_method.items()}
    for key, values in diversity.items():
        summary[key]["pixel_std_across_seeds"] = float(np.mean(values))
    return {"photos": [n for n, _ in photos], "max_side": max_side, "methods": summary}


def choose_temperature(summary: dict[str, dict[str, float]]) -> float:
    """Best LPIPS among the temperatures whose mean LR-consistency is acceptable."""
    candidates = [
        (row["lpips"], float(key[2:]))
        for key, row in summary.items()
        if key.startswith("T=") and row["lr_consistency_db"] >= MIN_LR_CONSISTENCY_DB
    ]
    if not candidates:  # none consistent enough: the most consistent one is the honest default
        candidates = [
            (-row["lr_consistency_db"], float(key[2:]))
            for key, row in summary.items()
            if key.startswith("T=")
        ]
    return min(candidates)[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("data/photos"))
    p.add_argument("--max-side", type=int, default=256)
    p.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    p.add_argument("--out", type=Path, help="write the full results as JSON here")
    p.add_argument("--write", action="store_true", help="store default temperature + metrics in the manifest")
    args = p.parse_args(argv)
    results = evaluate(args.model, args.data, args.max_side, tuple(args.temperatures))
    chosen = choose_temperature(results["methods"])
    results["default_temperature"] = chosen
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.write:
        manifest = load_manifest(args.model)
        metrics = {
            "validation_photos": results["photos"],
            "crop_max_side_hr": results["max_side"],
            "seeds": list(SEEDS),
            "methods": results["methods"],
        }
        write_manifest(args.model, replace(manifest, default_temperature=chosen, metrics=metrics))


if __name__ == "__main__":
    main()
