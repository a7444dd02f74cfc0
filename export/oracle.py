"""The texture stage's ceiling: decode the detail crops with the HR photo's own codes.

``python -m export.oracle --checkpoint runs/.../model.pt [--data data/photos] [--json]``

Whatever the LAR module learns, it can at best sample the codes the VQ-VAE encoder gives the HR
photo; if decoding those "oracle" codes is no better than the coarse image, no sampler can make
the texture stage pay. Round 3 showed exactly that (the oracle residual averaged under 1/255), so
this probe runs on every new VQ-VAE before a LAR module is trained on it. Scores come from the
same ``Scorer`` and detail set that pick the shipped defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .model import load_checkpoint
from .scoring import Scorer, load_set


def _image(t: torch.Tensor) -> np.ndarray:
    return t.float().clamp(0, 1)[0].permute(1, 2, 0).numpy()


@torch.no_grad()
def probe(checkpoint: Path, data: Path, which: str = "detail") -> dict[str, dict[str, float]]:
    model, _ = load_checkpoint(checkpoint)
    scorer = Scorer()
    rows: dict[str, list[dict]] = {"coarse": [], "oracle": []}
    residual, used = [], set()
    for _, hr, lr in load_set(data, which):
        lr_t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
        hr_t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
        xc = model.coarse(lr_t).float()
        out = model.vqvae(hr_t, xc)
        used.update(out.indices.unique().tolist())
        residual.append(float((out.sr - xc).abs().mean()) * 255.0)
        rows["coarse"].append(scorer.score(_image(xc), hr, lr))
        rows["oracle"].append(scorer.score(_image(out.sr), hr, lr))
    summary = {
        name: {k: float(np.mean([r[k] for r in rs if r[k] is not None])) for k in rs[0]}
        for name, rs in rows.items()
    }
    summary["oracle"]["residual_255"] = float(np.mean(residual))
    summary["oracle"]["codes_used"] = float(len(used))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score the VQ-VAE's oracle reconstruction.")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("data/photos"))
    p.add_argument("--set", dest="which", default="detail", choices=("detail", "val"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = probe(args.checkpoint, args.data, args.which)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name, row in result.items():
        print(name.ljust(8), "  ".join(f"{k} {v:.4g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
