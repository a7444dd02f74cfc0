"""Texture VQ-VAE: the codes carry only the texture that the coarse image lacks.

``E`` sees the HR photo together with the coarse image, so it can spend its codebook on what ``C``
got wrong; ``D`` gets the codes plus its own encoding ``Et`` of the coarse image and returns a
residual added to it. The index map lives at stride 2 of the HR image (2h x 2w for an h x w input).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..configs import LarsrConfig
from .blocks import ResBlock, conv3x3, conv_of_unshuffled, depth_to_space, space_to_depth
from .consistency import LRProjection


class EMACodebook(nn.Module):
    """Vector quantiser with an exponential-moving-average codebook and dead-code restarts.

    EMA updates avoid the codebook collapse that plain gradient VQ shows on small data, and
    restarting unused entries from recent encoder outputs keeps all codes in play; the LAR module
    later has to predict these indices, so a used, balanced codebook matters.
    """

    def __init__(
        self, n_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5, cosine: bool = False
    ) -> None:
        super().__init__()
        self.n_codes, self.dim, self.decay, self.eps = n_codes, dim, decay, eps
        self.cosine = cosine
        embed = torch.randn(n_codes, dim) * 0.1
        if cosine:
            embed = F.normalize(embed, dim=1)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("usage", torch.zeros(n_codes))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        dist = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)[None, :]
        )
        return dist.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """``(N,H,W) int -> (N,dim,H,W)``; a Gather in ONNX."""
        return F.embedding(indices, self.embed).permute(0, 3, 1, 2)

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        """Unit-length encoder outputs for a cosine codebook.

        With plain L2 codes the commitment loss and a small EMA init let encoder outputs and
        codes shrink together until they carry nothing (round 3: commitment 3e-5, the oracle's
        residual under 1/255, the decoder ignored its codes). On the unit sphere the codes
        cannot shrink, so the only way to lower the loss is to say something (ViT-VQGAN's fix).
        """
        return F.normalize(z, dim=1) if self.cosine else z

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.prepare(z)
        n, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()
        idx = self.nearest(flat)
        quant = self.embed[idx].view(n, h, w, c).permute(0, 3, 1, 2)
        if self.training:
            self._ema_update(flat, idx)
        commit = F.mse_loss(z.float(), quant.detach())
        quant = z + (quant - z).detach()  # straight-through estimator
        return quant, commit, idx.view(n, h, w)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.n_codes).type(flat.dtype)
        counts = onehot.sum(0)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        size = (self.cluster_size + self.eps) / (total + self.n_codes * self.eps) * total
        embed = self.embed_sum / size[:, None]
        self.embed.copy_(F.normalize(embed, dim=1) if self.cosine else embed)
        self.usage.mul_(0.99).add_(counts)
        dead = self.usage < 1e-3
        if dead.any():
            pick = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            fresh = flat[pick] + 0.01 * torch.randn_like(flat[pick])
            if self.cosine:
                fresh = F.normalize(fresh, dim=1)
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
            self.usage[dead] = 1.0


class VQOutput(NamedTuple):
    sr: torch.Tensor
    commitment: torch.Tensor
    indices: torch.Tensor


class TextureVQVAE(nn.Module):
    def __init__(self, cfg: LarsrConfig) -> None:
        super().__init__()
        ch = cfg.vq_features
        self.phase = bool(cfg.vq_phase)
        extra = 2 if self.phase else 0
        # (1, 8, 1, 1): after depth_to_space(2), channel 0 is the cell's row and channel 1 its
        # column inside the LR pixel (0 or 1).
        pattern = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]).view(1, 8, 1, 1)
        self.register_buffer("phase_pattern", pattern, persistent=False)
        self.encoder = nn.Sequential(  # E: concat(x, xc) at stride 2
            conv3x3(6 * 4 + extra, ch),
            *(ResBlock(ch) for _ in range(cfg.vq_res_blocks)),
            nn.SiLU(),
            nn.Conv2d(ch, cfg.code_dim, 1),
        )
        self.codebook = EMACodebook(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.vq_cosine)
        self.coarse_encoder = nn.Sequential(  # Et: the coarse image at the same stride
            conv3x3(3 * 4 + extra, ch),
            ResBlock(ch),
        )
        self.decoder = nn.Sequential(  # D: residual over xc
            conv3x3(ch + cfg.code_dim, ch),
            *(ResBlock(ch) for _ in range(cfg.vq_res_blocks)),
            nn.SiLU(),
            conv3x3(ch, 3 * 4),
        )
        self.commitment_weight = cfg.commitment
        self.project = LRProjection(cfg.scale, cfg.vq_lr_project) if cfg.vq_lr_project > 0 else None

    def with_phase(self, grid: torch.Tensor) -> torch.Tensor:
        """``grid`` on the index grid, plus the two phase channels when the config asks for them.

        Built from the tensor's own shape (no arange), so it exports with dynamic sizes; tiles
        start on even index cells, so the phase is the same in every tile.
        """
        if not self.phase:
            return grid
        zeros = space_to_depth(grid[:, :1] * 0.0, 2)  # (N, 4, H/2, W/2)
        phase = depth_to_space(torch.cat([zeros, zeros], dim=1) + self.phase_pattern.to(grid.dtype), 2)
        return torch.cat([grid, phase], dim=1)

    def _encode_input(self, hr: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        return self.with_phase(space_to_depth(torch.cat([hr, xc], dim=1), 2))

    def encode(self, hr: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        """Index map ``(N, 2h, 2w)`` of an HR photo given its coarse SR image."""
        z = self.codebook.prepare(self.encoder(self._encode_input(hr, xc)))
        n, c, h, w = z.shape
        idx = self.codebook.nearest(z.permute(0, 2, 3, 1).reshape(-1, c).float())
        return idx.view(n, h, w)

    def decode_quantized(self, quant: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        if self.phase:
            cond = self.coarse_encoder(self.with_phase(space_to_depth(xc, 2)))
        else:  # the same first convolution without the unshuffle's transpose
            first, *rest = self.coarse_encoder
            cond = conv_of_unshuffled(xc, first, 2)
            for block in rest:
                cond = block(cond)
        residual = depth_to_space(self.decoder(torch.cat([cond, quant], dim=1)), 2)
        if self.project is not None:
            residual = self.project(residual)
        return xc + residual

    def decode(self, indices: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        """``(indices (N,2h,2w) int64, xc) -> sr``: the decoder.onnx graph."""
        return self.decode_quantized(self.codebook.lookup(indices), xc)

    def forward(self, hr: torch.Tensor, xc: torch.Tensor) -> VQOutput:
        z = self.encoder(self._encode_input(hr, xc))
        quant, commit, idx = self.codebook(z)
        sr = self.decode_quantized(quant.to(z.dtype), xc)
        return VQOutput(sr, self.commitment_weight * commit, idx)
