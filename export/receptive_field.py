"""Receptive fields of the exported graphs, in LR pixels, for seam-free tiling.

A tile computed with a context margin at least as wide as the chained receptive fields gives, in
its own centre, exactly the untiled result. The convolutional graphs are measured (gradient of one
output LR-pixel block with respect to the input, with random weights every connection is non-zero),
so the numbers cannot drift from the code; the LAR module's field is an autoregressive chain and is
derived from the config: each of the ``T`` steps reaches ``lar_mix_layers`` patches further.
"""

from __future__ import annotations

import torch

from .model import LarsrModel

_PROBE_LR = 96  # large enough that no measured field touches the border


def _radius(grad: torch.Tensor, per_lr: int, centre: int, own: int = 1) -> int:
    """Max distance in LR px between the non-zero gradient rows/cols and the probed LR block."""
    g = grad.abs().sum(dim=tuple(range(grad.dim() - 2))) if grad.dim() > 2 else grad.abs()
    rows = torch.nonzero(g.sum(1)).flatten()
    cols = torch.nonzero(g.sum(0)).flatten()
    lo = min(int(rows.min()), int(cols.min())) // per_lr
    hi = max(int(rows.max()), int(cols.max())) // per_lr
    return max(centre - lo, hi - (centre + own - 1))


def _probe_model(model: LarsrModel) -> LarsrModel:
    """A copy with random weights and a spread-out codebook so no path has zero gradient."""
    probe = LarsrModel(model.cfg).double().eval()
    torch.manual_seed(1)
    for p in probe.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return probe


def measure(model: LarsrModel) -> dict[str, int]:
    cfg = model.cfg
    probe = _probe_model(model)
    s, n, c = cfg.scale, _PROBE_LR, _PROBE_LR // 2

    lr = torch.rand(1, 3, n, n, dtype=torch.float64, requires_grad=True)
    probe.coarse(lr)[..., c * s : (c + 1) * s, c * s : (c + 1) * s].sum().backward()
    coarse = _radius(lr.grad[0], 1, c)

    xc = torch.rand(1, 3, n * s, n * s, dtype=torch.float64, requires_grad=True)
    cond, start = probe.lar.condition(xc)
    k = cfg.patch_size
    lr_per_patch = k // 2  # the index map is 2x the LR grid
    p = c // lr_per_patch
    (cond[0, p, p].sum() + start[0, p, p].sum()).backward()
    condition = _radius(xc.grad[0], s, p * lr_per_patch, own=lr_per_patch)

    xc = torch.rand(1, 3, n * s, n * s, dtype=torch.float64, requires_grad=True)
    quant = torch.rand(1, cfg.code_dim, 2 * n, 2 * n, dtype=torch.float64, requires_grad=True)
    out = probe.vqvae.decode_quantized(quant, xc)
    out[..., c * s : (c + 1) * s, c * s : (c + 1) * s].sum().backward()
    decoder = max(_radius(xc.grad[0], s, c), _radius(quant.grad[0], 2, c))

    lar = k * k // cfg.lar_codes_per_step * cfg.lar_mix_layers * lr_per_patch
    return {"coarse": coarse, "condition": condition, "lar": lar, "decoder": decoder}
