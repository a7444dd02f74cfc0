"""Coarse SR network ``C``: an RRDB regression net (ESRGAN's generator family), lr -> xc at x4.

The coarse image carries the structure; the texture codes only add detail on top of it. The paper
found that a stronger ``C`` gives a better final model, so width and depth are config values:
the small shipped model and the paper's 64x23 use the same code. A bicubic skip makes the network
learn only the residual over bicubic interpolation, which speeds up CPU training a lot. The layers
after upsampling run at 4x the LR resolution, so their width (``coarse_up_features``) is separate
from the body's: on a CPU they dominate both time and the memory of a tile.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..configs import LarsrConfig
from .resample import BicubicUpsample


class ResidualDenseBlock(nn.Module):
    def __init__(self, ch: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(ch + i * growth, growth if i < 4 else ch, 3, padding=1) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, dim=1))
            if i < 4:
                feats.append(self.act(out))
        return x + 0.2 * out


class RRDB(nn.Module):
    def __init__(self, ch: int, growth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(ch, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class CoarseSR(nn.Module):
    """``lr (N,3,h,w) [0,1] -> xc (N,3,4h,4w)``."""

    def __init__(self, cfg: LarsrConfig) -> None:
        super().__init__()
        ch, growth = cfg.coarse_features, cfg.coarse_growth
        self.scale = cfg.scale
        self.conv_first = nn.Conv2d(3, ch, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(ch, growth) for _ in range(cfg.coarse_blocks)))
        up = cfg.coarse_up_features
        self.conv_body = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv_up1 = nn.Conv2d(ch, up, 3, padding=1)
        self.conv_up2 = nn.Conv2d(up, up, 3, padding=1)
        self.conv_hr = nn.Conv2d(up, up, 3, padding=1)
        self.conv_last = nn.Conv2d(up, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.skip = BicubicUpsample(cfg.scale)  # a fixed conv: onnxruntime's cubic Resize was slow

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.upsample(lr, self.body_features(lr))

    def body_features(self, lr: torch.Tensor) -> torch.Tensor:
        """The LR-resolution features: 32 of the net's 34 px receptive field (``coarse_rows``
        streams this part row by row)."""
        feat = self.conv_first(lr)
        return feat + self.conv_body(self.body(feat))

    def upsample(self, lr: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Features -> HR image: the upsampling layers and the bicubic skip (2 LR px a side)."""
        feat = self.act(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        feat = self.act(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        out = self.conv_last(self.act(self.conv_hr(feat)))
        return self.skip(lr) + out
