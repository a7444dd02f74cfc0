"""Named model configurations, kept in one place.

One dataclass describes every size knob of the three networks, so the same code serves the small
CPU model we ship and the paper-size one. The config is stored in checkpoints and in the ONNX
manifest, and ``LarsrConfig.from_dict`` reads it back, so a model folder always says how it was built.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class LarsrConfig:
    name: str
    scale: int = 4
    # Coarse SR (RRDB, ESRGAN's generator): features, RRDB blocks, dense growth channels.
    coarse_features: int = 32
    coarse_blocks: int = 1
    coarse_growth: int = 16
    coarse_up_features: int = 16
    # Texture VQ-VAE: the index map lives at stride 2 of the HR image (2x the LR size).
    vq_features: int = 32
    vq_res_blocks: int = 1
    codebook_size: int = 256
    code_dim: int = 16
    # Give E and D the position of each index cell inside its LR pixel (2x2 cells per LR pixel).
    # Without it the codes must spend themselves on that phase, the LAR learns which code goes
    # with which phase, and argmax sampling prints one stripe per LR pixel (4 output px).
    vq_phase: bool = False
    # Encoder outputs and codes on the unit sphere (see EMACodebook.prepare); off for old checkpoints.
    vq_cosine: bool = False
    # Back-projection steps that remove the LR-visible part of the decoder's residual
    # (export.networks.consistency); 0 keeps the residual as the decoder makes it.
    vq_lr_project: int = 0
    commitment: float = 0.25
    ema_decay: float = 0.99
    # LAR module: patch x patch positions per autoregressive sequence.
    patch_size: int = 4
    lar_features: int = 48
    lar_layers: int = 2
    lar_heads: int = 4
    # First layers that mix neighbouring patches (3x3 conv); each one widens the tile margin.
    lar_mix_layers: int = 1
    # Codes drawn per autoregressive step: 2 halves the steps (and the cache, and the LAR's tile
    # margin); a step's codes sit half a patch apart (positions s and s + k*k/2, two index rows),
    # so they are drawn independently of each other as neighbouring patches' codes already are.
    lar_codes_per_step: int = 1
    cond_features: int = 32
    # Resolution of the condition U-Net's first level, in HR pixels per cell: 2 runs it on the index
    # grid (the first models), 4 on the LR grid, a quarter of the FLOPs; the LAR module needs the
    # structure of the coarse image, not its pixels.
    cond_stride: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LarsrConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_overrides(self, **kwargs: Any) -> LarsrConfig:
        return replace(self, **kwargs)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` config overrides; values are JSON (``true``, ``4``) or plain strings."""
    known = {f.name for f in fields(LarsrConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--override wants key=value, got {pair!r}")
        if key not in known:
            raise SystemExit(f"--override: unknown config field {key!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


CONFIGS: dict[str, LarsrConfig] = {
    # Unit tests: seconds to build, export and run.
    "tiny": LarsrConfig(
        name="tiny",
        coarse_features=8,
        coarse_blocks=1,
        coarse_growth=4,
        coarse_up_features=8,
        vq_features=8,
        vq_res_blocks=1,
        codebook_size=16,
        code_dim=4,
        lar_features=16,
        lar_layers=2,
        lar_heads=2,
        cond_features=8,
    ),
    # The shipped CPU model: every training run fits in under an hour on 2 AVX2 cores (no bf16 units).
    "small": LarsrConfig(name="small"),
    # The second shipped CPU model: a deeper, wider coarse net paid for by running the condition
    # U-Net on the LR grid; about 190 kFLOP per output pixel (benchmarks.flops), under the 200k budget.
    "base": LarsrConfig(
        name="base",
        coarse_features=40,
        coarse_blocks=2,
        coarse_growth=20,
        coarse_up_features=24,
        cond_stride=4,
        vq_lr_project=2,
    ),
    # The paper's scale (RRDB 64x23, 1024 codes of dim 64); needs a GPU to train.
    "paper": LarsrConfig(
        name="paper",
        coarse_features=64,
        coarse_blocks=23,
        coarse_growth=32,
        coarse_up_features=64,
        vq_features=128,
        vq_res_blocks=4,
        codebook_size=1024,
        code_dim=64,
        lar_features=256,
        lar_layers=8,
        lar_heads=8,
        lar_mix_layers=2,
        cond_features=128,
    ),
}


def get_config(name: str) -> LarsrConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}") from None
