"""The three LAR-SR networks bundled with their config, and the checkpoint format.

Training runs stage by stage (coarse, then VQ-VAE, then LAR) and each stage writes into the same
checkpoint file, so export only ever needs one path and the config that built the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from larsr_cli.atomic import atomic_write

from .configs import LarsrConfig, get_config
from .networks import CoarseSR, LARModule, TextureVQVAE

PARTS = ("coarse", "vqvae", "lar")


class LarsrModel(nn.Module):
    def __init__(self, cfg: LarsrConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.coarse = CoarseSR(cfg)
        self.vqvae = TextureVQVAE(cfg)
        self.lar = LARModule(cfg)

    @classmethod
    def from_name(cls, name: str, seed: int = 0) -> LarsrModel:
        torch.manual_seed(seed)
        return cls(get_config(name))


def save_checkpoint(path: Path, model: LarsrModel, extra: dict[str, Any] | None = None) -> None:
    """Atomic save: a checkpoint interrupted mid-write must not destroy the previous one."""
    state = {"config": model.cfg.to_dict(), **{p: getattr(model, p).state_dict() for p in PARTS}}
    state["extra"] = extra or {}
    with atomic_write(path, overwrite=True) as fh:
        torch.save(state, fh)


def load_checkpoint(path: Path, overrides: dict[str, Any] | None = None) -> tuple[LarsrModel, dict[str, Any]]:
    """A trained model; ``overrides`` may change config fields that own no weights (a missing or
    unexpected weight fails the load)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = LarsrModel(LarsrConfig.from_dict(state["config"]).with_overrides(**(overrides or {})))
    for part in PARTS:
        getattr(model, part).load_state_dict(state[part])
    return model.eval(), state.get("extra", {})
