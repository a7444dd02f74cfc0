"""DISTS (Ding et al., 2020): a perceptual image distance that no larsr training stage uses.

Why it exists here: LPIPS-alex was both a VQ-VAE loss and the metric that picked the default
temperature, and it rewards hatching. DISTS compares the *statistics* (means, variances,
covariances) of VGG16 feature maps, so it accepts a different but natural texture and penalises
regular artefacts; it selects the model's defaults and gates the texture bars.

The ``dists-pytorch`` wheel ships the learned alpha/beta weights (``weights.pt``) but builds its
VGG16 through torchvision, which would download ImageNet weights and does not install beside this
torch. The VGG16 trunk is the same ImageNet network whose convolutions the LPIPS-vgg conversion
already holds (``python -m export.lpips convert``), so this module rebuilds DISTS from those two
files and needs no download. Scores match the reference formula (including its L2 pooling).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .lpips import default_weights_path

# VGG16 ``features`` indices of the five stages, with L2 pooling in place of max pooling.
_STAGES: list[list[int]] = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
_CHANNELS = [3, 64, 128, 256, 512, 512]
_LPIPS_SLICE_OF = {i: s + 1 for s, idx in enumerate(_STAGES) for i in idx}


class L2Pool(nn.Module):
    """Hanning-weighted L2 pooling, stride 2: DISTS' anti-aliased replacement for max pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=self.channels)
        return (out + 1e-12).sqrt()


def dists_weights_path() -> Path:
    """The alpha/beta file inside the installed ``dists-pytorch`` wheel (found without importing
    the package, whose ``__init__`` imports torchvision)."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("DISTS weights need the dists-pytorch wheel: pip install dists-pytorch")
    return Path(next(iter(spec.submodule_search_locations))) / "weights.pt"


class DISTS(nn.Module):
    """``DISTS()(a, b)`` -> distance per image ``(N,)`` for NCHW RGB batches in [0, 1]."""

    def __init__(self, vgg_path: Path | None = None, weights_path: Path | None = None) -> None:
        super().__init__()
        vgg = torch.load(vgg_path or default_weights_path("vgg"), map_location="cpu", weights_only=True)
        self.stages = nn.ModuleList()
        for s, indices in enumerate(_STAGES):
            layers: list[nn.Module] = [] if s == 0 else [L2Pool(_CHANNELS[s])]
            for i in indices:
                w = vgg[f"net.slice{_LPIPS_SLICE_OF[i]}.{i}.weight"]
                conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(vgg[f"net.slice{_LPIPS_SLICE_OF[i]}.{i}.bias"])
                layers += [conv, nn.ReLU()]
            self.stages.append(nn.Sequential(*layers))
        ab = torch.load(weights_path or dists_weights_path(), map_location="cpu", weights_only=True)
        self.register_buffer("alpha", ab["alpha"].float())
        self.register_buffer("beta", ab["beta"].float())
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two Nx3xHxW batches of equal shape, got {a.shape} and {b.shape}")
        fa, fb = self.features(a), self.features(b)
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, _CHANNELS, dim=1)
        beta = torch.split(self.beta / w_sum, _CHANNELS, dim=1)
        dist1 = dist2 = 0.0
        c1 = c2 = 1e-6
        for k in range(len(_CHANNELS)):
            xm, ym = fa[k].mean([2, 3], keepdim=True), fb[k].mean([2, 3], keepdim=True)
            s1 = (2 * xm * ym + c1) / (xm**2 + ym**2 + c1)
            dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
            xv = ((fa[k] - xm) ** 2).mean([2, 3], keepdim=True)
            yv = ((fb[k] - ym) ** 2).mean([2, 3], keepdim=True)
            cov = (fa[k] * fb[k]).mean([2, 3], keepdim=True) - xm * ym
            s2 = (2 * cov + c2) / (xv + yv + c2)
            dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
        return (1 - (dist1 + dist2)).reshape(-1)
