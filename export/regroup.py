"""A checkpoint whose LAR draws several codes per step, started from a one-code-per-step LAR.

Why: the 16 sequential LAR steps are the largest share of larsr's time (43% at 256 px), and each
step widens the exact tile margin by one patch. A LAR that draws ``c`` codes per step needs
``16 / c`` steps, a ``1 / c`` key/value cache and a ``1 / c`` LAR margin. Its layers, condition
U-Net and start feature are the trained model's as they are; only the token interface changes
(``export.networks.lar.LARModule``: token ``s`` carries positions ``s + j * 16 / c``), and it is
started where the old model already is, so that a LAR round adapts it instead of three rounds
from scratch:

- slot ``j``'s code embedding and head are the old ones (every slot starts as the old model's
  prediction for its position, from one state);
- a token's condition and position embedding are the mean of its positions' (the condition's
  per-position projection is scaled by ``1 / c``: ``token_condition`` sums), and so is its input
  embedding of the previous token's codes.

    python -m export.regroup --checkpoint export/checkpoints/larsr-x4-round5.pt --codes-per-step 2 \\
        --out runs/larsr-x4-r6/model.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from larsr_cli.errors import LarsrError

from .model import LarsrModel, load_checkpoint, save_checkpoint


def regroup(source: LarsrModel, codes_per_step: int) -> LarsrModel:
    """``source`` (one code per step) as a LAR drawing ``codes_per_step`` codes per step."""
    old = source.lar
    if old.codes_per_step != 1:
        raise LarsrError(f"the source LAR already draws {old.codes_per_step} codes per step")
    if old.positions % codes_per_step:
        raise LarsrError(f"{codes_per_step} codes per step do not divide {old.positions} positions")
    model = LarsrModel(source.cfg.with_overrides(lar_codes_per_step=codes_per_step))
    model.coarse.load_state_dict(source.coarse.state_dict())
    model.vqvae.load_state_dict(source.vqvae.state_dict())
    new = model.lar
    new.condition.load_state_dict(old.condition.state_dict())
    new.layers.load_state_dict(old.layers.state_dict())
    new.norm_out.load_state_dict(old.norm_out.state_dict())
    c, tokens = codes_per_step, new.tokens
    with torch.no_grad():
        new.condition.to_positions.weight.mul_(1.0 / c)
        new.condition.to_positions.bias.mul_(1.0 / c)
        new.code_embed.weight.copy_(old.code_embed.weight.repeat(c, 1) / c)
        new.pos_embed.copy_(old.pos_embed.reshape(c, tokens, -1).mean(0))
        new.head.weight.copy_(old.head.weight.repeat(c, 1))
        new.head.bias.copy_(old.head.bias.repeat(c))
    return model.eval()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export.regroup", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a one-code-per-step model")
    parser.add_argument("--codes-per-step", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="new checkpoint (an existing one is kept)")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; a run resumes from it, remove it to regroup again")
    try:
        source, extra = load_checkpoint(args.checkpoint)
        model = regroup(source, args.codes_per_step)
    except (LarsrError, OSError, KeyError, RuntimeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    provenance = {"source": str(args.checkpoint), "codes_per_step": args.codes_per_step}
    save_checkpoint(args.out, model, {"stages": extra.get("stages", {}), "regroup": provenance})
    print(f"{args.out}: {args.checkpoint} drawing {args.codes_per_step} codes per LAR step")


if __name__ == "__main__":
    main()
