"""The LAR module: local autoregression over k x k patches of the texture index map.

Every patch of the index map is an independent sequence of ``k*k`` codes in raster order,
conditioned on features of the coarse image. All patches are sampled in parallel, so drawing a
whole image takes ``k*k`` network steps whatever its size.

This is the paper's "LAR-attn-layer" family: weights are shared across positions, positions mix
only through causally masked attention inside a patch, and (in the first ``lar_mix_layers``
layers) a 3x3 convolution mixes the *same position* of neighbouring patches so textures agree
across patch borders. Each mixing layer widens the dependency of a code on its neighbours by one
patch per step, which is what the manifest's LAR receptive field declares for seam-free tiling.

Tensors are channel-last: ``(N, Hp, Wp, T, C)`` with ``T = k*k`` and ``Hp, Wp`` the patch grid.
``forward`` is the teacher-forced pass used in training; ``step`` computes one position for all
patches from a cache of the keys and values of earlier positions, which is the fast sampling path.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..configs import LarsrConfig
from .blocks import ResBlock, conv3x3, conv_of_unshuffled


class ConditionEncoder(nn.Module):
    """U-Net-like encoder of the coarse image, brought to the index grid and unfolded per position.

    Returns the per-position condition ``(N, Hp, Wp, T, C)`` and the start feature ``(N, Hp, Wp, C)``
    taken from the strided bottom of the U-Net (one vector per patch), which is the input of
    position 0, where no earlier code exists.
    """

    def __init__(self, cfg: LarsrConfig) -> None:
        super().__init__()
        f, out, k = cfg.cond_features, cfg.lar_features, cfg.patch_size
        levels = int(math.log2(k))
        if 2**levels != k:
            raise ValueError("patch_size must be a power of two")
        self.patch = k
        self.stride = cfg.cond_stride
        if self.stride not in (2, 4):
            raise ValueError("cond_stride must be 2 (index grid) or 4 (LR grid)")
        # From the first level down to the patch grid (k index cells = 2k HR pixels per patch).
        levels = int(math.log2(2 * k // self.stride))
        self.stem = conv3x3(3 * self.stride**2, f)
        self.enc = nn.ModuleList(ResBlock(f if i == 0 else 2 * f) for i in range(levels))
        self.down = nn.ModuleList(conv3x3(f if i == 0 else 2 * f, 2 * f, stride=2) for i in range(levels))
        self.bottom = ResBlock(2 * f)
        self.up = nn.ModuleList(conv3x3(2 * f, 2 * f if i > 0 else f) for i in reversed(range(levels)))
        self.dec = nn.ModuleList(ResBlock(2 * f if i > 0 else f) for i in reversed(range(levels)))
        # On the LR grid each cell holds the 2x2 index cells it covers, unshuffled afterwards.
        self.lift = self.stride // 2
        self.to_positions = nn.Conv2d(f, out * self.lift**2, 1)
        self.to_start = nn.Conv2d(2 * f, out, 1)

    def forward(self, xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = conv_of_unshuffled(xc, self.stem, self.stride)
        skips = []
        for enc, down in zip(self.enc, self.down, strict=True):
            x = enc(x)
            skips.append(x)
            x = down(x)
        bottom = self.bottom(x)
        x = bottom
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(up(F.interpolate(x, scale_factor=2.0, mode="nearest")) + skip)
        cond = self._per_position(F.silu(x))
        start = self.to_start(F.silu(bottom)).permute(0, 2, 3, 1)
        return cond, start

    def _per_position(self, feat: torch.Tensor) -> torch.Tensor:
        """``to_positions`` on ``(N, f, h, w)`` features, rearranged to ``(N, Hp, Wp, T, C)``.

        The 1x1 convolution runs channel-last on the narrow input (a MatMul whose weight rows are
        put in ``(sub-row, sub-column, C)`` order), so the one rearrangement left moves blocks of
        ``lift * C`` contiguous floats; pixel_shuffle, pixel_unshuffle and a 5-D permute of the
        wide output took two thirds of the graph's time in onnxruntime. Same weights, same values.
        """
        lift, k = self.lift, self.patch
        c = self.to_positions.out_channels // (lift * lift)
        f = feat.shape[1]
        weight = self.to_positions.weight.reshape(c, lift, lift, f).permute(1, 2, 0, 3).reshape(-1, f)
        bias = self.to_positions.bias.reshape(c, lift, lift).permute(1, 2, 0).reshape(-1)
        z = F.linear(feat.permute(0, 2, 3, 1), weight, bias)  # (N, h, w, [sy, sx, C])
        n, h, w = z.shape[:3]
        cells = k // lift  # grid cells per patch side
        hp, wp = h // cells, w // cells
        # (N, Hp, cy, Wp, cx, sy, sx, C) -> (N, Hp, Wp, cy, sy, cx, sx, C): position (cy*lift+sy, cx*lift+sx)
        z = z.reshape(n, hp, cells, wp, cells, lift, lift, c).permute(0, 1, 3, 2, 5, 4, 6, 7)
        return z.reshape(n, hp, wp, k * k, c)


class LARAttnLayer(nn.Module):
    def __init__(self, ch: int, heads: int, mix: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)
        self.mix = mix
        if mix:
            self.norm_mix = nn.LayerNorm(ch)
            self.mix_conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm_mlp = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        *lead, c = x.shape
        return x.reshape(*lead, self.heads, c // self.heads)

    def _mix_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Same-position 3x3 conv over the patch grid; ``x`` is ``(N, Hp, Wp, T, C)``."""
        n, hp, wp, t, c = x.shape
        y = self.norm_mix(x).permute(0, 3, 4, 1, 2).reshape(n * t, c, hp, wp)
        y = self.mix_conv(y).reshape(n, t, c, hp, wp).permute(0, 3, 4, 1, 2)
        return x + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass over all positions, ``x`` is ``(N, Hp, Wp, T, C)``."""
        n, hp, wp, t, c = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).chunk(3, dim=-1)
        q, k, v = (self._split_heads(a).transpose(-2, -3) for a in (q, k, v))  # (..., heads, T, d)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(-2, -3).reshape(n, hp, wp, t, c))
        if self.mix:
            x = self._mix_patches(x)
        return x + self.mlp(self.norm_mlp(x))

    def step(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One position for every patch.

        ``x`` is ``(N, Hp, Wp, C)`` at position ``t``; ``past_k`` and ``past_v`` are the first
        ``t`` positions of the cache, both ``(t, heads, d, P)`` with ``P = N*Hp*Wp``. Time leads
        so that the runtime hands onnxruntime the filled prefix of its cache as a view and
        attention reads only the ``t`` positions there are (no mask, no empty slots); patches are
        last so that every attention op is a long vectorised sweep (onnxruntime ran the
        ``(P, heads, T, d)`` layout's batched 16x12 matmuls call-bound), and the two layout
        changes are plain 2-D transposes (a ``(.., P, heads)`` order cost 40% of the step in
        Transpose). Softmax is written out: onnxruntime's Softmax transposes for a leading axis.
        Returns the new state and this position's keys and values ``(2, heads, d, P)``, for the
        caller to write into the cache at ``t`` (block copies).
        """
        n, hp, wp, c = x.shape
        heads = self.heads
        d = c // heads
        qkv = self.qkv(self.norm_attn(x)).reshape(-1, 3 * c).t().reshape(3, heads, d, -1)
        q = qkv[0] * (1.0 / math.sqrt(d))
        kv_new = qkv[1:]
        scores = torch.cat([(past_k * q).sum(2), (kv_new[0] * q).sum(1).unsqueeze(0)], 0)  # (t+1, h, P)
        e = torch.exp(scores - scores.amax(0, keepdim=True))
        weights = e / e.sum(0, keepdim=True)
        att = (weights[:-1].unsqueeze(2) * past_v).sum(0) + weights[-1].unsqueeze(1) * kv_new[1]  # (h, d, P)
        x = x + self.proj(att.reshape(c, -1).t().reshape(n, hp, wp, c))
        if self.mix:
            x = self._mix_patches(x.unsqueeze(3)).squeeze(3)
        return x + self.mlp(self.norm_mlp(x)), kv_new


class LARModule(nn.Module):
    """Tokens, not positions, are the autoregressive steps: with ``lar_codes_per_step = c`` token
    ``s`` of a patch carries the ``c`` positions ``s + j * T/c`` (``j < c``), embeds the codes of
    token ``s - 1`` (one embedding table per slot, summed), reads the sum of its positions'
    condition vectors and predicts its ``c`` codes from one state (``c`` heads side by side).
    ``c = 1`` is the original one-code-per-step model with the same parameter names and shapes."""

    def __init__(self, cfg: LarsrConfig) -> None:
        super().__init__()
        ch, k = cfg.lar_features, cfg.patch_size
        self.patch = k
        self.n_codes = cfg.codebook_size
        self.codes_per_step = cfg.lar_codes_per_step
        if (k * k) % self.codes_per_step:
            raise ValueError("lar_codes_per_step must divide patch_size**2")
        self.condition = ConditionEncoder(cfg)
        self.code_embed = nn.Embedding(cfg.codebook_size * self.codes_per_step, ch)
        self.pos_embed = nn.Parameter(torch.zeros(self.tokens, ch))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(
            LARAttnLayer(ch, cfg.lar_heads, mix=i < cfg.lar_mix_layers) for i in range(cfg.lar_layers)
        )
        self.norm_out = nn.LayerNorm(ch)
        self.head = nn.Linear(ch, cfg.codebook_size * self.codes_per_step)

    @property
    def positions(self) -> int:
        return self.patch * self.patch

    @property
    def tokens(self) -> int:
        """Autoregressive steps per patch."""
        return self.positions // self.codes_per_step

    def prev_code_shape(self, n: int, hp: int, wp: int) -> tuple[int, ...]:
        """``step``'s ``prev_code``: one code per patch, or a trailing axis of ``c`` codes."""
        return (n, hp, wp) if self.codes_per_step == 1 else (n, hp, wp, self.codes_per_step)

    def token_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """Per-position condition ``(N, Hp, Wp, T, C)`` -> per token ``(N, Hp, Wp, T/c, C)``."""
        if self.codes_per_step == 1:
            return cond
        n, hp, wp, _, c = cond.shape
        return cond.reshape(n, hp, wp, self.codes_per_step, self.tokens, c).sum(3)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., c)`` codes of one token (``(...)`` when c = 1) -> the summed slot embeddings."""
        if self.codes_per_step == 1:
            return self.code_embed(codes)
        offsets = torch.arange(self.codes_per_step, device=codes.device) * self.n_codes
        return self.code_embed(codes + offsets).sum(-2)

    def to_patches(self, indices: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` index map -> ``(N, Hp, Wp, T)`` sequences in raster order."""
        k = self.patch
        n, h, w = indices.shape
        grid = indices.reshape(n, h // k, k, w // k, k).permute(0, 1, 3, 2, 4)
        return grid.reshape(n, h // k, w // k, k * k)

    def to_patches_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, K)`` -> ``(N, Hp, Wp, T, K)``: per-position view of index-map logits."""
        k = self.patch
        n, h, w, c = logits.shape
        grid = logits.reshape(n, h // k, k, w // k, k, c).permute(0, 1, 3, 2, 4, 5)
        return grid.reshape(n, h // k, w // k, k * k, c)

    def from_patches(self, seq: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_patches`` for a trailing-dims tensor ``(N, Hp, Wp, T, ...)``."""
        k = self.patch
        n, hp, wp = seq.shape[:3]
        rest = seq.shape[4:]
        x = seq.reshape(n, hp, wp, k, k, *rest).permute(0, 1, 3, 2, 4, *range(5, 5 + len(rest)))
        return x.reshape(n, hp * k, wp * k, *rest)

    def forward(self, xc: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(N, H, W, n_codes)`` for the index map ``(N, H, W)`` of ``xc``."""
        cond, start = self.condition(xc)
        seq = self.to_patches(indices)
        n, hp, wp, _ = seq.shape
        c, tokens = self.codes_per_step, self.tokens
        # Position s + j*tokens is slot j of token s: (N, Hp, Wp, tokens, c).
        tok = seq.reshape(n, hp, wp, c, tokens).transpose(3, 4)
        codes = tok[..., :-1, :] if c > 1 else tok[..., :-1, 0]
        prev = self.embed_codes(codes)  # input at token s is the codes of token s-1
        x = torch.cat([start.unsqueeze(3), prev], dim=3) + self.token_condition(cond) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        logits = self.head(self.norm_out(x))  # (N, Hp, Wp, tokens, c*K)
        if c > 1:
            logits = logits.reshape(n, hp, wp, tokens, c, self.n_codes).transpose(3, 4)
            logits = logits.reshape(n, hp, wp, self.positions, self.n_codes)
        return self.from_patches(logits)

    def step(
        self,
        prev_code: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        start: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for token ``t`` of every patch, and this token's keys/values.

        ``prev_code`` ``(N, Hp, Wp)`` int64, ``(N, Hp, Wp, c)`` with ``c`` codes per step (ignored
        at t=0), ``t`` int64 ``[1]``, ``cond`` ``(N, Hp, Wp, tokens, C)`` (``token_condition``),
        ``start`` ``(N, Hp, Wp, C)``, ``past`` one ``(keys, values)`` pair per layer: the first
        ``t`` tokens of ``empty_cache``'s tensors (``cache_prefix``). Returns logits
        ``(N, Hp, Wp, n_codes)``, ``(N, Hp, Wp, c, n_codes)`` with ``c`` codes per step (code
        axis last: the runtime views them as rows for numpy's draw without a copy) and
        ``new_kv`` ``(L, 2, heads, d, N*Hp*Wp)``;
        ``write_cache`` stores it.
        """
        embedded = self.embed_codes(prev_code)
        x = torch.where((t == 0).view(1, 1, 1, 1), start, embedded)
        x = x + torch.index_select(cond, 3, t).squeeze(3) + torch.index_select(self.pos_embed, 0, t)
        new_kv = []
        for layer, (past_k, past_v) in zip(self.layers, past, strict=True):
            x, kv = layer.step(x, past_k, past_v)
            new_kv.append(kv)
        # The head's bias is added after the reshape, so that the graph's last node is the Add,
        # which writes into the runtime's bound logits buffer. A final Reshape copies instead:
        # 8% of the step on a 256 px input. Same products and sums as ``self.head``, same bits.
        logits = torch.matmul(self.norm_out(x), self.head.weight.t())
        bias = self.head.bias
        if self.codes_per_step > 1:
            logits = logits.reshape(*logits.shape[:3], self.codes_per_step, self.n_codes)
            bias = bias.reshape(self.codes_per_step, self.n_codes)
        return logits + bias, torch.stack(new_kv)

    def empty_cache(self, n: int, hp: int, wp: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: keys and values ``(tokens, heads, d, P)``, ``P = n*hp*wp`` (CACHE_LAYOUT)."""
        ch = self.code_embed.embedding_dim
        heads = self.layers[0].heads
        shape = (self.tokens, heads, ch // heads, n * hp * wp)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.layers]

    @staticmethod
    def cache_prefix(
        past: list[tuple[torch.Tensor, torch.Tensor]], t: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The positions before ``t``: what ``step`` reads."""
        return [(keys[:t], values[:t]) for keys, values in past]

    @staticmethod
    def write_cache(past: list[tuple[torch.Tensor, torch.Tensor]], new_kv: torch.Tensor, t: int) -> None:
        for (keys, values), kv in zip(past, new_kv, strict=True):
            keys[t] = kv[0]
            values[t] = kv[1]
