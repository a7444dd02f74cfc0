"""The upscaling pipeline: coarse SR -> condition -> k*k cached LAR steps -> decoder, per tile.

``Upscaler`` owns the onnxruntime sessions of one model folder and turns float RGB arrays into x4
arrays. It knows nothing about files: the CLI and the batch engine do IO, so the same object
serves the command line, the Python API and any other front end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import LarsrError
from .images import pil_arrays, quantise, resize_float
from .manifest import Manifest, load_manifest
from .sampler import CodeNoise, sample_codes
from .sessions import DeviceChoice, open_session, parse_device
from .tiling import Box, Tile, plan_tiles

ProgressFn = Callable[[int, int], None]

# Bytes of working memory for one tile with its context (outputs not included): an 8192x8192
# output then stays under 2 GB peak RSS with its 200 MB uint8 buffer.
DEFAULT_MEMORY_BUDGET = 1_200_000_000


def available_memory() -> int:
    """Physical RAM (the guard against explicit tiles that cannot fit)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest laptop
        return 8_000_000_000


class Upscaler:
    """x4 LAR-SR upscaler over one model folder.

    ``temperature`` 0 gives the deterministic (argmax) texture; higher values draw more varied
    texture. The same ``seed`` gives the same picture for any tile size.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        device: str = "auto",
        threads: int | None = None,
        verify: bool = True,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        self.folder = Path(folder)
        self.manifest: Manifest = load_manifest(self.folder, verify=verify)
        self.device: DeviceChoice = parse_device(device)
        self.memory_budget = int(memory_budget)
        self.memory_limit = int(0.8 * available_memory())
        self.sessions = {
            name: open_session(self.folder / f"{name}.onnx", self.device, threads)
            for name in ("coarse", "condition", "lar_step", "decoder")
        }
        lar = self.manifest.lar
        self._layers = int(lar["layers"])
        self._features = int(lar["features"])
        self._positions = self.manifest.patch_size**2

    @classmethod
    def from_pretrained(cls, model: str = "larsr-x4", **kwargs: object) -> Upscaler:
        """``model`` is an embedded name, a local folder or ``hf://owner/repo[@revision]``."""
        from .registry import resolve_model

        return cls(resolve_model(model), **kwargs)  # type: ignore[arg-type]

    @property
    def scale(self) -> int:
        return self.manifest.scale

    def check_scale(self, scale: float) -> None:
        """The one place that says which ``--scale`` values are allowed."""
        if not (1.0 <= scale <= self.scale):
            raise LarsrError(f"scale (--scale) must be between 1 and {self.scale}, got {scale:g}")

    def output_size(self, width: int, height: int, scale: float) -> tuple[int, int]:
        self.check_scale(scale)
        return max(1, round(width * scale)), max(1, round(height * scale))

    @property
    def default_temperature(self) -> float:
        return self.manifest.default_temperature

    @property
    def default_texture(self) -> float:
        return self.manifest.default_texture

    def resolve_texture(self, texture: float | None) -> float:
        """``--texture``: 0 is the coarse net's clean result, 1 the full texture residual."""
        texture = self.default_texture if texture is None else float(texture)
        if not 0.0 <= texture <= 1.0:  # also refuses nan
            raise LarsrError(f"texture must be between 0 and 1, got {texture:g}")
        return texture

    # -- tiling -----------------------------------------------------------------------------------

    def bytes_per_lr_pixel(self) -> int:
        """Working memory per LR pixel of a tile's context, for choosing and checking tile sizes.

        Per LR pixel there are 4 code positions, each with a cached key and value per LAR layer
        and a condition vector, plus a few full-resolution feature maps of the coarse network
        (16 HR pixels). Calibrated against peak RSS on the small model (7.3 KB measured, 7.9 KB
        estimated).
        """
        cache = 4 * self._layers * 2 * self._features * 4
        cond = 4 * self._features * 4
        up_features = int(self.manifest.config.get("coarse_up_features", 64))
        hr_maps = 3 * self.scale**2 * up_features * 4
        return cache + cond + hr_maps + 1024

    def auto_tile(self, height: int, width: int) -> int:
        """The largest tile whose context fits the memory budget; 0 (whole image) when it fits."""
        per_px = self.bytes_per_lr_pixel()
        if height * width * per_px <= self.memory_budget:
            return 0
        side = int(math.sqrt(self.memory_budget / per_px)) - 2 * self.manifest.context_margin
        m = self.manifest.tile_multiple
        return max(4 * m, side // m * m)

    def check_memory(self, tiles: list[Tile], requested: int | str) -> None:
        """Refuse an explicit tile size whose working memory cannot fit in this machine's RAM."""
        need = max(t.context.height * t.context.width for t in tiles) * self.bytes_per_lr_pixel()
        if need > self.memory_limit:
            what = "the whole image (tile=0, --tile 0)" if requested == 0 else f"tile={requested} (--tile)"
            raise LarsrError(
                f"{what} needs about {need / 1e9:.1f} GB of working memory, more than the "
                f"{self.memory_limit / 1e9:.1f} GB available; use tile='auto' (--tile auto) or a smaller tile"
            )

    # -- one tile ---------------------------------------------------------------------------------

    def _coarse(self, lr: np.ndarray) -> np.ndarray:
        return self.sessions["coarse"].run(None, {"lr": lr})[0]

    def _empty_cache(self, patches: int) -> dict[str, np.ndarray]:
        heads = int(self.manifest.lar["heads"])
        d = self._features // heads
        past = {}
        for layer in range(self._layers):
            past[f"past_k_{layer}"] = np.zeros((patches, heads, d, self._positions), dtype=np.float32)
            past[f"past_v_{layer}"] = np.zeros((patches, heads, self._positions, d), dtype=np.float32)
        return past

    def _draw_codes(
        self, xc: np.ndarray, index_box: Box, temperature: float, noise: CodeNoise | None
    ) -> np.ndarray:
        """Run the k*k cached LAR steps for all patches of a tile; returns the index map (1, h2, w2)."""
        cond, start = self.sessions["condition"].run(None, {"xc": xc})
        _, hp, wp = cond.shape[:3]
        k = self.manifest.patch_size
        past = self._empty_cache(hp * wp)
        feeds = {"cond": cond, "start": start, **past}
        indices = np.zeros((1, hp * k, wp * k), dtype=np.int64)
        uniforms = None
        if temperature > 0 and noise is not None:
            uniforms = noise.window(index_box.y0, index_box.y1, index_box.x0, index_box.x1)
        prev = np.zeros((1, hp, wp), dtype=np.int64)
        step = self.sessions["lar_step"]
        for t in range(self._positions):
            feeds["prev_code"], feeds["t"] = prev, np.array([t], dtype=np.int64)
            logits, new_kv = step.run(None, feeds)
            for layer in range(self._layers):  # keys are (P, h, d, T), values (P, h, T, d)
                past[f"past_k_{layer}"][..., t] = new_kv[layer, 0]
                past[f"past_v_{layer}"][..., t, :] = new_kv[layer, 1]
            dy, dx = divmod(t, k)
            u = None if uniforms is None else uniforms[dy::k, dx::k].reshape(-1)
            prev = sample_codes(logits, temperature, u).reshape(1, hp, wp)
            indices[0, dy::k, dx::k] = prev[0]
        return indices

    def _run_tile(
        self, lr: np.ndarray, tile: Tile, temperature: float, noise: CodeNoise | None, texture: float = 1.0
    ) -> np.ndarray:
        ctx = tile.context
        patch = np.ascontiguousarray(lr[ctx.y0 : ctx.y1, ctx.x0 : ctx.x1].transpose(2, 0, 1)[None])
        xc = self._coarse(patch)
        if texture > 0:
            stride = int(self.manifest.lar.get("index_stride", 2))  # index map cells per LR pixel
            index_box = Box(stride * ctx.y0, stride * ctx.y1, stride * ctx.x0, stride * ctx.x1)
            indices = self._draw_codes(xc, index_box, temperature, noise)
            sr = self.sessions["decoder"].run(None, {"indices": indices, "xc": xc})[0]
            if texture != 1.0:
                # A blend of the two finished pictures (the clean coarse one and the full one), so
                # that every strength is exactly what export.evaluate scores from those two.
                clean = np.clip(xc, 0.0, 1.0)
                sr = clean + np.float32(texture) * (np.clip(sr, 0.0, 1.0) - clean)
        else:  # no texture: the LAR steps and the decoder would be wasted work
            sr = xc
        own = tile.own.relative_to(ctx)
        s = self.scale
        return sr[0, :, own.y0 * s : own.y1 * s, own.x0 * s : own.x1 * s].transpose(1, 2, 0)

    # -- whole image ------------------------------------------------------------------------------

    def _pad(self, rgb: np.ndarray) -> np.ndarray:
        m = self.manifest.tile_multiple
        h, w = rgb.shape[:2]
        ph, pw = (-h) % m, (-w) % m
        if not (ph or pw):
            return rgb
        mode = "reflect" if h > ph and w > pw else "edge"
        return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode=mode)

    def coarse_array(self, rgb: np.ndarray) -> np.ndarray:
        """The coarse regression network alone on the whole image (float32 HxWx3 in [0, 1]): the
        structure larsr's texture is drawn on, which evaluation and benchmarks score on its own."""
        h, w = rgb.shape[:2]
        padded = self._pad(np.clip(rgb.astype(np.float32, copy=False), 0.0, 1.0))
        xc = self._coarse(np.ascontiguousarray(padded.transpose(2, 0, 1)[None]))
        s = self.scale
        return np.clip(xc[0, :, : h * s, : w * s].transpose(1, 2, 0), 0.0, 1.0)

    def plan(self, height: int, width: int, tile: int | str = "auto") -> list[Tile]:
        m = self.manifest.tile_multiple
        ph, pw = -(-height // m) * m, -(-width // m) * m
        size = self.auto_tile(ph, pw) if tile == "auto" else int(tile)
        tiles = plan_tiles(ph, pw, size, self.manifest.context_margin, m)
        if tile != "auto":
            self.check_memory(tiles, int(tile))
        return tiles

    def upscale_array(
        self,
        rgb: np.ndarray,
        *,
        seed: int = 0,
        temperature: float | None = None,
        texture: float | None = None,
        tile: int | str = "auto",
        out_dtype: type = np.uint8,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """``rgb`` float32 HxWx3 in [0,1] -> (sH)x(sW)x3 of ``out_dtype`` (uint8, uint16 or float32).

        The output buffer is the only allocation that grows with the image: tiles are written into
        it already quantised, so a 16K output costs its own bytes plus one tile's working memory.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise LarsrError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1:
            raise LarsrError("cannot upscale an empty image")
        temperature = self.default_temperature if temperature is None else float(temperature)
        if temperature < 0:
            raise LarsrError(f"temperature must be >= 0, got {temperature}")
        texture = self.resolve_texture(texture)
        lr = self._pad(np.clip(rgb.astype(np.float32, copy=False), 0.0, 1.0))
        tiles = self.plan(h, w, tile)
        s = self.scale
        out = np.empty((h * s, w * s, 3), dtype=out_dtype)
        noise = CodeNoise(seed) if temperature > 0 else None
        for i, tile_ in enumerate(tiles):
            sr = self._run_tile(lr, tile_, temperature, noise, texture)
            own = tile_.own
            y0, x0 = own.y0 * s, own.x0 * s
            y1, x1 = min(own.y1 * s, h * s), min(own.x1 * s, w * s)
            out[y0:y1, x0:x1] = quantise(sr[: y1 - y0, : x1 - x0], out_dtype)
            if progress:
                progress(i + 1, len(tiles))
        return out

    def upscale(
        self,
        image: Image.Image | np.ndarray,
        *,
        seed: int = 0,
        temperature: float | None = None,
        texture: float | None = None,
        scale: float = 4.0,
        tile: int | str = "auto",
    ) -> Image.Image:
        """Convenience API: a PIL image or array in, an 8-bit PIL image (RGB or RGBA) out.

        Alpha is upscaled with bicubic and reattached; arrays may be uint8, uint16 or float [0,1],
        HxW or HxWx3/4. Files with ICC/EXIF/16-bit needs go through ``imageio`` instead.
        """
        rgb, alpha = _as_float_rgba(image)
        pixels, alpha = self.upscale_with_alpha(
            rgb,
            alpha,
            seed=seed,
            temperature=temperature,
            texture=texture,
            scale=scale,
            tile=tile,
            out_dtype=np.uint8,
        )
        if alpha is None:
            return Image.fromarray(pixels, "RGB")
        return Image.fromarray(np.dstack([pixels, quantise(alpha, np.uint8)]), "RGBA")

    def upscale_with_alpha(
        self,
        rgb: np.ndarray,
        alpha: np.ndarray | None,
        *,
        seed: int = 0,
        temperature: float | None = None,
        texture: float | None = None,
        scale: float = 4.0,
        tile: int | str = "auto",
        out_dtype: type = np.float32,
        progress: ProgressFn | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour through the model, alpha by bicubic (the networks have no alpha channel), both
        resampled to ``scale``; the one place where the CLI and the Python API finish an image.

        Colour comes back in ``out_dtype`` (integer buffers keep a 16K result small), alpha as
        float [0, 1].
        """
        h, w = rgb.shape[:2]
        size = self.output_size(w, h, scale)
        out = self.upscale_array(
            rgb,
            seed=seed,
            temperature=temperature,
            texture=texture,
            tile=tile,
            out_dtype=out_dtype,
            progress=progress,
        )
        native = (out.shape[1], out.shape[0])
        if alpha is not None:
            alpha = resize_float(alpha, native)
        if size != native:
            out = resize_pixels(out, size)
            alpha = None if alpha is None else resize_float(alpha, size)
        return out, alpha


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area filter for --scale below the native factor, in the pixels' own dtype."""
    if pixels.dtype == np.float32:
        return resize_float(pixels, size)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def _as_float_rgba(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(image, Image.Image):
        return pil_arrays(image)
    arr = np.asarray(image)
    if arr.dtype in (np.uint8, np.uint16):
        arr = arr.astype(np.float32) * np.float32(1.0 / np.iinfo(arr.dtype).max)  # as files decode
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise LarsrError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    colour = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    alpha = arr[..., -1] if arr.shape[2] in (2, 4) else None
    return np.ascontiguousarray(colour), alpha
