"""Where do stripes come from? Decode the detail crops with different code maps and compare.

``python -m export.stripes --model models/larsr-x4 [--checkpoint runs/.../model.pt] [--out F.json]``

The stripe score (``export.metrics.stripe_score``) of the decoder's output is measured for code maps
that isolate one part at a time:

- ``lar_t0``: the LAR module's argmax codes (what ``-t 0`` ships);
- ``oracle``: the VQ-VAE encoder's codes of the HR photo itself (needs the training checkpoint):
  if this is clean and ``lar_t0`` is not, the LAR module prints the stripes, not the codebook;
- ``shuffled``: the LAR codes permuted at random over the map (same codes, no arrangement): if
  this is striped too, single codes draw the stripes (codebook + decoder);
- ``constant``: the most used code everywhere: the decoder's own pattern for one code.

It also reports, for the LAR's argmax codes and the oracle's, how a code depends on its column
(``column_bias``: the share of cells whose code equals the code two columns to the right, minus
the share equal to the next column's). A period of 4 output px is 2 index cells, so alternation
between neighbouring cells of a row is the signature of a phase-dependent code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from larsr_cli.pipeline import Upscaler
from larsr_cli.sampler import ArgmaxSampler
from larsr_cli.tiling import Box

from .metrics import stripe_score
from .scoring import load_set


def _decode(upscaler: Upscaler, indices: np.ndarray, xc: np.ndarray) -> np.ndarray:
    sr = upscaler.sessions["decoder"].run(None, {"indices": indices, "xc": xc})[0]
    return np.clip(sr[0].transpose(1, 2, 0), 0, 1)


def diagnose(model: Path, data: Path, checkpoint: Path | None) -> dict:
    upscaler = Upscaler(model, precision="fp32")  # the reference graphs
    torch_model = None
    if checkpoint is not None:
        import torch

        from .model import load_checkpoint

        torch_model, _ = load_checkpoint(checkpoint)
        torch.set_grad_enabled(False)
    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {}
    same: dict[str, list[tuple[float, float]]] = {}
    for _, hr, lr in load_set(data, "detail"):
        xc = upscaler.coarse_array(lr).transpose(2, 0, 1)[None].astype(np.float32)
        h2, w2 = 2 * lr.shape[0], 2 * lr.shape[1]
        codes = upscaler.arch.draw_codes(xc, Box(0, h2, 0, w2), ArgmaxSampler())
        maps = {
            "lar_t0": codes,
            "shuffled": rng.permutation(codes.reshape(-1)).reshape(codes.shape),
            "constant": np.full_like(codes, np.bincount(codes.reshape(-1)).argmax()),
        }
        if torch_model is not None:
            import torch

            hr_t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
            maps["oracle"] = torch_model.vqvae.encode(hr_t, torch.from_numpy(xc)).numpy().astype(np.int64)
        scores.setdefault("hr", []).append(stripe_score(hr))
        scores.setdefault("coarse", []).append(stripe_score(np.clip(xc[0].transpose(1, 2, 0), 0, 1)))
        for name, idx in maps.items():
            scores.setdefault(name, []).append(stripe_score(_decode(upscaler, idx, xc)))
        for name in ("lar_t0", "oracle"):
            if name in maps:
                c = maps[name][0]
                pair = (float((c[:, 1:] == c[:, :-1]).mean()), float((c[:, 2:] == c[:, :-2]).mean()))
                same.setdefault(name, []).append(pair)
    result: dict = {"stripe_score": {k: float(np.mean(v)) for k, v in scores.items()}}
    for name, pairs in same.items():
        nxt, skip = (float(np.mean(v)) for v in zip(*pairs, strict=True))
        result[name] = {
            "same_code_next_column": nxt,
            "same_code_two_columns": skip,
            "column_bias": skip - nxt,
        }
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("data/photos"))
    p.add_argument("--checkpoint", type=Path, help="training checkpoint, for the oracle codes")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    result = diagnose(args.model, args.data, args.checkpoint)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
