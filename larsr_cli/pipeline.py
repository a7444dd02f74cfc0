"""The upscaling pipeline shared by every architecture: padding, tiles, alpha, quantising, scale.

``Upscaler`` opens the onnxruntime sessions of one model folder, hands them to the model's
architecture (``larsr_cli.arch``: the per-tile maths) and turns float RGB arrays into xS arrays.
It knows nothing about files: the CLI and the batch engine do IO, so the same object serves the
command line, the Python API and any other front end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .arch import Architecture
from .arch.base import TileStepHook
from .errors import LarsrError
from .heap import keep_numpy_off_huge_pages, release_freed_memory, serve_large_blocks_from_heap
from .images import bleed_under_alpha, pil_arrays, quantise, resize_float
from .manifest import Manifest, load_manifest
from .precision import CpuFlags, graph_files, resolve_precision
from .sampler import Sampler, Step, StepHook, resolve_sampler
from .sessions import DeviceChoice, open_session, parse_device, resolve_threads
from .tiling import Box, Tile, balanced_spans, cheapest_grid, hr_slices, lr_window, plan_tiles
from .twopass import render_two_pass, window_bytes

# (units done, units in total) over the whole image; a unit is one step of one tile.
ProgressFn = Callable[[int, int], None]

# Bytes of working memory for one tile with its context (outputs not included). What bounds it is
# peak RSS: a 4096x4096 output (1024 px input, `larsr upscale --tile auto`) peaked at 1334 MiB with
# 0.85 GB before tiles trimmed the heap (36 tiles, 162 s); with a trim after every tile and the
# balanced grid, 1.05 GB gives 4x4 tiles at 1331 MiB (116 s), 1.1 GB a 3x5 grid at 1500 MiB (over
# the 1.5 GB bar), 1.0 GB 6x3 at 1235 MiB (benchmarks/results/speed.md has the recorded run).
# Round 6 with heap allocations and per-token estimates (texture 6.7 KB per LR px): 1.2 GB gave
# 9 tiles (3x3) for that output at 1169-1262 MiB in a fresh CLI or API process, but a long-lived
# one (a Ray worker, an API server) that had run other images first reached 1491-1576 MiB: what
# one image leaves in the heap raises the next one's peak. 1.0 GB (12 tiles) peaks at 1193-1296
# MiB in the same long-lived sequence and was as fast within this VM's noise (its trims hand back
# less memory to fault in again): benchmarks.heap_policy --on-budgets 1.2,1.0 --mixed.
DEFAULT_MEMORY_BUDGET = 1_000_000_000


def available_memory() -> int:
    """Physical RAM (the guard against explicit tiles that cannot fit)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest laptop
        return 8_000_000_000


class Upscaler:
    """Upscaler over one model folder, whatever its architecture.

    ``temperature`` 0 gives the deterministic (argmax) texture; higher values draw more varied
    texture. The same ``seed`` gives the same picture for any tile size.

    ``precision``: ``fp32``, ``int8`` (the model's int8 graphs, fp32 for roles it has none of) or
    ``auto`` (int8 on a CPU with int8 dot-product units when the model ships int8 graphs);
    ``self.precision`` is what was chosen. Seeds and tiles stay exact within one precision.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        device: str = "auto",
        threads: int | None = None,
        verify: bool = True,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        precision: str = "auto",
        cpu_flags: CpuFlags | None = None,
    ) -> None:
        serve_large_blocks_from_heap()  # tensors reuse heap pages instead of faulting new ones
        keep_numpy_off_huge_pages()  # and fault them back in 4 KB at a time, not 2 MB
        self.folder = Path(folder)
        self.manifest: Manifest = load_manifest(self.folder, verify=verify)
        self.device: DeviceChoice = parse_device(device)
        self.precision: str = resolve_precision(precision, self.manifest, self.device.label, cpu_flags)
        self.memory_budget = int(memory_budget)
        self.memory_limit = int(0.8 * available_memory())
        self.threads = threads
        arch_class = self.manifest.architecture_class
        self.sessions = {
            role: open_session(self.folder / graph.file, self.device, threads, role in arch_class.arena_roles)
            for role, graph in graph_files(self.manifest, self.precision).items()
        }
        self.arch: Architecture = arch_class(
            self.manifest.spec,
            self.manifest.scale,
            self.sessions,
            margin_of=self.manifest.margin_of,
        )

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

    def resolve_temperature(self, temperature: float | None) -> float:
        """``--temperature``: None is the model's default; 0 is argmax."""
        temperature = self.default_temperature if temperature is None else float(temperature)
        if not temperature >= 0:  # also refuses nan
            raise LarsrError(f"temperature must be >= 0, got {temperature}")
        return temperature

    def resolve_sampler(self, temperature: float | None, seed: int) -> Sampler:
        """The sampler ``upscale_array`` uses for (temperature, seed), drawing on this
        Upscaler's threads (benchmarks wrap it to time the draws)."""
        workers = resolve_threads(self.threads)
        return resolve_sampler(self.resolve_temperature(temperature), seed, workers)

    def resolve_texture(self, texture: float | None) -> float:
        """``--texture``: 0 is the coarse net's clean result, 1 the full texture residual."""
        texture = self.default_texture if texture is None else float(texture)
        if not 0.0 <= texture <= 1.0:  # also refuses nan
            raise LarsrError(f"texture must be between 0 and 1, got {texture:g}")
        return texture

    # -- tiling -----------------------------------------------------------------------------------

    def bytes_per_lr_pixel(self) -> int:
        return self.arch.bytes_per_lr_pixel()

    def tiling_mode(self, texture: float) -> str:
        """``two-pass`` (structure strips, then texture tiles on them), ``structure`` (texture 0:
        the structure stages alone) or ``one-pass`` (a family that cannot be split)."""
        if not self.arch.structure_stages:
            return "one-pass"
        return "two-pass" if texture > 0 else "structure"

    def tile_margin(self, texture: float) -> int:
        """The margin the planned tiles carry: in two-pass mode only the stages after the
        structure, whose input image is already exact over the whole context."""
        arch = self.arch
        mode = self.tiling_mode(texture)
        if mode == "two-pass":
            return self.manifest.margin_of(tuple(s for s in arch.stages if s not in arch.structure_stages))
        if mode == "structure":
            return self.manifest.margin_of(arch.structure_stages)
        return self.manifest.context_margin

    def run_mode(self, texture: float, tiles: int) -> str:
        """How a plan of ``tiles`` tiles runs: one tile is the whole chain at once (``one-pass``),
        several run in ``tiling_mode``."""
        return self.tiling_mode(texture) if tiles > 1 else "one-pass"

    def tile_bytes(self, rows: int, cols: int, width: int, mode: str) -> int:
        """Working memory of one tile context of (rows, cols) LR px in an image ``width`` wide,
        run in ``mode`` (``run_mode``): a texture tile beside its band's structure window
        (two-pass), the structure stages alone (texture 0), or the whole chain (one-pass)."""
        if mode == "two-pass":
            per_px = self.arch.texture_bytes_per_lr_pixel()
            return rows * cols * per_px + window_bytes(rows, width, self.scale)
        if mode == "structure":
            return rows * cols * self.arch.structure_bytes_per_lr_pixel()
        return rows * cols * self.bytes_per_lr_pixel()

    def auto_plan(self, height: int, width: int, texture: float = 1.0) -> list[Tile]:
        """``--tile auto``: the grid that computes the fewest context pixels within the budget.

        Every extra row or column of tiles adds two margins across the image, so the best grid
        is the coarsest one whose largest context fits; contexts are balanced (border tiles own a
        margin more) so no tile is smaller than the budget needs. 1024x1024 LR at 1.05 GB: 4x4
        tiles of 338 px contexts, where the largest square tile that fit (236 px) made 5x5 with
        an 80 px sliver per axis.
        """
        if height * width * self.bytes_per_lr_pixel() <= self.memory_budget:
            whole = Box(0, height, 0, width)
            return [Tile(whole, whole)]
        m, margin = self.manifest.tile_multiple, self.tile_margin(texture)

        mode = self.tiling_mode(texture)  # several tiles: a single one was ruled out above

        def fits(tiles: list[Tile]) -> bool:
            rows, cols = max(t.context.height for t in tiles), max(t.context.width for t in tiles)
            return self.tile_bytes(rows, cols, width, mode) <= self.memory_budget

        grid = cheapest_grid(
            lambda count: balanced_spans(height, count, margin, m),
            lambda count: balanced_spans(width, count, margin, m),
            margin,
            height,
            width,
            fits,
        )
        if grid.best is None:  # a budget below any grid: the smallest tiles
            return plan_tiles(height, width, 4 * m, margin, m)
        return grid.best

    def strip_pixels(self, tiles: list[Tile], width: int) -> int:
        """LR pixels (context included) per structure strip: what the budget leaves beside the
        structure window of the tallest band, at the structure stages' own cost per pixel."""
        rows = max(t.context.height for t in tiles)
        left = self.memory_budget - window_bytes(rows, width, self.scale)
        return max(left, self.memory_budget // 4) // self.arch.structure_bytes_per_lr_pixel()

    def trims_between_stages(self, tiles: list[Tile], width: int, texture: float) -> bool:
        """Whether the heap goes back to the OS between the stages of a tile: always when the
        image is tiled (its tiles are as large as the budget allows); for an image run whole,
        only when it needs more than half the budget. Why not always: after a trim the next
        stage page-faults its memory in again (a 256 px input: 1.12 s/Mpx with trims, 0.84 s
        without, steady state), and what a small tile leaves in the heap is small beside the
        budget; a 448 px input run whole without them peaked at 1493 MiB."""
        if len(tiles) > 1:
            return True
        tile = tiles[0].context
        mode = self.run_mode(texture, 1)
        return 2 * self.tile_bytes(tile.height, tile.width, width, mode) > self.memory_budget

    def check_memory(self, tiles: list[Tile], requested: int | str, width: int, texture: float) -> None:
        """Refuse an explicit tile size whose working memory cannot fit in this machine's RAM,
        judged by the same per-mode figure ``--tile auto`` plans with."""
        mode = self.run_mode(texture, len(tiles))
        need = max(self.tile_bytes(t.context.height, t.context.width, width, mode) for t in tiles)
        if need > self.memory_limit:
            what = "the whole image (tile=0, --tile 0)" if requested == 0 else f"tile={requested} (--tile)"
            raise LarsrError(
                f"{what} needs about {need / 1e9:.1f} GB of working memory, more than the "
                f"{self.memory_limit / 1e9:.1f} GB available; use tile='auto' (--tile auto) or a smaller tile"
            )

    # -- one tile ---------------------------------------------------------------------------------

    def _hook(self, on_step: StepHook | None, index: int, count: int) -> TileStepHook | None:
        if on_step is None:
            return None

        def hook(step: int, steps: int) -> None:
            on_step(Step(index, count, step, steps))

        return hook

    def _render_tiles(
        self,
        lr: np.ndarray,
        tiles: list[Tile],
        sampler: Sampler,
        texture: float,
        on_step: StepHook | None,
    ) -> Iterator[tuple[Tile, np.ndarray]]:
        """(tile, its own HR pixels as HxWx3 float) for every tile, in the order of ``tiles``."""
        s, count = self.scale, len(tiles)
        self.arch.release_between_stages = self.trims_between_stages(tiles, lr.shape[1], texture)
        if self.arch.release_between_stages:
            # What earlier, smaller images left in the heap (they keep it, for speed) goes back
            # before a large one: a 4096 px output after three 256 px ones peaked at 1679 MiB.
            self.arch.empty_shared_arena()
            release_freed_memory("image")

        def own_pixels(tile: Tile, sr: np.ndarray) -> np.ndarray:
            rows, cols = hr_slices(tile.own, tile.context, s)
            return sr[0, :, rows, cols].transpose(1, 2, 0)

        if self.run_mode(texture, count) == "two-pass":
            arch = self.arch

            def texture_stages(xc: np.ndarray, tile: Tile, index: int) -> np.ndarray:
                hook = self._hook(on_step, index, count)
                sr = arch.render_on_structure(xc, tile.context, sampler, texture, hook, keep=tile.own)
                release_freed_memory("tile")
                return sr

            rendered = render_two_pass(
                arch.structure,
                texture_stages,
                lr,
                tiles,
                scale=s,
                structure_margin=self.manifest.margin_of(arch.structure_stages),
                multiple=self.manifest.tile_multiple,
                strip_px=self.strip_pixels(tiles, lr.shape[1]),
            )
            for tile, sr in rendered:  # each result already covers its tile's own pixels
                yield tile, sr[0].transpose(1, 2, 0)
            return
        for index, tile in enumerate(tiles):
            hook = self._hook(on_step, index, count)
            sr = self.arch.render_tile(lr_window(lr, tile.context), tile.context, sampler, texture, hook)
            if count > 1:
                release_freed_memory("tile")
            yield tile, own_pixels(tile, sr)

    # -- whole image ------------------------------------------------------------------------------

    def _pad(self, rgb: np.ndarray) -> np.ndarray:
        m = self.manifest.tile_multiple
        h, w = rgb.shape[:2]
        ph, pw = (-h) % m, (-w) % m
        if not (ph or pw):
            return rgb
        # Reflect needs more pixels than it mirrors; a sliver of an image repeats its edge.
        if h > ph and w > pw:
            return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")

    def coarse_array(self, rgb: np.ndarray) -> np.ndarray:
        """The coarse regression network alone on the whole image (float32 HxWx3 in [0, 1]): the
        structure larsr's texture is drawn on, which evaluation and benchmarks score on its own."""
        h, w = rgb.shape[:2]
        padded = self._pad(np.clip(rgb.astype(np.float32, copy=False), 0.0, 1.0))
        xc = self.arch.structure(np.ascontiguousarray(padded.transpose(2, 0, 1)[None]))
        s = self.scale
        return np.clip(xc[0, :, : h * s, : w * s].transpose(1, 2, 0), 0.0, 1.0)

    def plan(
        self, height: int, width: int, tile: int | str = "auto", texture: float | None = None
    ) -> list[Tile]:
        """Tiles of an image; ``texture`` (default: the model's) decides which stages they carry
        a margin for (``tiling_mode``)."""
        texture = self.resolve_texture(texture)
        m = self.manifest.tile_multiple
        ph, pw = -(-height // m) * m, -(-width // m) * m
        if tile == "auto":
            return self.auto_plan(ph, pw, texture)
        tiles = plan_tiles(ph, pw, int(tile), self.tile_margin(texture), m)
        self.check_memory(tiles, int(tile), pw, texture)
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
        sampler: Sampler | None = None,
        on_step: StepHook | None = None,
    ) -> np.ndarray:
        """``rgb`` float32 HxWx3 in [0,1] -> (sH)x(sW)x3 of ``out_dtype`` (uint8, uint16 or float32).

        The output buffer is the only allocation that grows with the image: tiles are written into
        it already quantised, so a 16K output costs its own bytes plus one tile's working memory.
        ``sampler`` replaces the one resolved from (temperature, seed); ``on_step`` hears every
        step of every tile (``progress`` is the same news as two numbers).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise LarsrError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1:
            raise LarsrError("cannot upscale an empty image")
        texture = self.resolve_texture(texture)
        if sampler is None:
            sampler = self.resolve_sampler(temperature, seed)
        lr = self._pad(np.clip(rgb.astype(np.float32, copy=False), 0.0, 1.0))
        tiles = self.plan(h, w, tile, texture)
        s = self.scale
        out = np.empty((h * s, w * s, 3), dtype=out_dtype)

        def hear(step: Step) -> None:
            if on_step is not None:
                on_step(step)
            if progress is not None:
                progress(step.done, step.total)

        hook = hear if (on_step is not None or progress is not None) else None
        for tile_, sr in self._render_tiles(lr, tiles, sampler, texture, hook):
            own = tile_.own
            y0, x0 = own.y0 * s, own.x0 * s
            y1, x1 = min(own.y1 * s, h * s), min(own.x1 * s, w * s)
            out[y0:y1, x0:x1] = quantise(sr[: y1 - y0, : x1 - x0], out_dtype)
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
        HxW or HxWx3/4. Files with ICC/EXIF/16-bit needs go through ``larsr_cli.images`` instead.
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
        if alpha is not None:
            rgb = bleed_under_alpha(rgb, alpha)
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
