"""A checkpoint whose coarse net comes from one training run and texture stages from another.

Why: the texture stages (VQ-VAE and LAR) condition on the coarse *image*, not on the coarse net's
weights or features, so a faster coarse net that restores the same structure can take over a
finished model's texture stages, and a short LAR round adapts them to its slightly different
images instead of three rounds from scratch (round 5: the 16-channel coarse probe under round 4's
VQ-VAE and LAR; the oracle with the photo's own codes stayed at 31.8 dB, validation cross-entropy
2.68 before the LAR round and 2.64 after).

    python -m export.graft --texture export/checkpoints/larsr-x4-round4.pt \\
        --coarse export/checkpoints/coarse16-probe.pt --out runs/larsr-x4-r5b/model.pt

The result's config is the texture checkpoint's with every ``coarse_*`` field of the coarse one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from larsr_cli.errors import LarsrError

from .configs import LarsrConfig
from .model import LarsrModel, load_checkpoint, save_checkpoint


def coarse_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(LarsrConfig) if f.name.startswith("coarse_"))


def graft(texture_ckpt: Path, coarse_ckpt: Path) -> tuple[LarsrModel, dict]:
    """The texture checkpoint's VQ-VAE and LAR on the coarse checkpoint's coarse net."""
    texture, extra = load_checkpoint(texture_ckpt)
    coarse, _ = load_checkpoint(coarse_ckpt)
    if texture.cfg.scale != coarse.cfg.scale:
        scales = f"x{texture.cfg.scale} texture stages, x{coarse.cfg.scale} coarse net"
        raise LarsrError(f"scales differ: {scales}")
    cfg = texture.cfg.with_overrides(**{k: getattr(coarse.cfg, k) for k in coarse_fields()})
    model = LarsrModel(cfg)
    model.coarse.load_state_dict(coarse.coarse.state_dict())
    model.vqvae.load_state_dict(texture.vqvae.state_dict())
    model.lar.load_state_dict(texture.lar.state_dict())
    provenance = {"coarse": str(coarse_ckpt), "vqvae": str(texture_ckpt), "lar": str(texture_ckpt)}
    return model.eval(), {"stages": extra.get("stages", {}), "graft": provenance}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export.graft", description=__doc__.splitlines()[0])
    parser.add_argument("--texture", type=Path, required=True, help="checkpoint giving the VQ-VAE and LAR")
    parser.add_argument("--coarse", type=Path, required=True, help="checkpoint giving the coarse net")
    parser.add_argument("--out", type=Path, required=True, help="new checkpoint (an existing one is kept)")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; a run resumes from it, remove it to graft again")
    try:
        model, extra = graft(args.texture, args.coarse)
    except (LarsrError, OSError, KeyError, RuntimeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model, extra)
    print(f"{args.out}: coarse from {args.coarse}, VQ-VAE and LAR from {args.texture}")


if __name__ == "__main__":
    main()
