"""A small patch discriminator for the VQ-VAE stage (training only; never exported).

L1/MSE and a VGG feature loss reward the mean of plausible textures, which is a blur; a GAN term
rewards a texture that looks drawn from the photo distribution, which is what the decoder must
render from sampled codes. Kept small (four 4x4 convs, ~0.3 M parameters, a 34 px receptive field)
so it costs a fraction of the VGG loss on a CPU, with spectral norm so it stays stable without
tuning (as in Real-ESRGAN's U-Net discriminator and VQGAN's PatchGAN).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    def __init__(self, features: int = 32) -> None:
        super().__init__()
        f = features

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1)), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            *block(3, f, 2),
            *block(f, 2 * f, 2),
            *block(2 * f, 4 * f, 1),
            spectral_norm(nn.Conv2d(4 * f, 1, 4, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One realness logit per ~34 px patch; inputs in [0, 1], centred here."""
        return self.net(x * 2 - 1)
