"""PyTorch definitions of the three LAR-SR networks (coarse SR, texture VQ-VAE, LAR module)."""

from .coarse import CoarseSR
from .lar import LARModule
from .vqvae import TextureVQVAE

__all__ = ["CoarseSR", "LARModule", "TextureVQVAE"]
