"""LAR-SR (CVPR 2022): coarse SR -> condition -> cached LAR steps -> texture decoder.

Four graphs: ``coarse`` (LR -> coarse HR image), ``condition`` (coarse image -> per-patch
condition vectors and start tokens), ``lar_step`` (one autoregressive step for all patches at
once, with a key/value cache: k*k steps, or k*k / c when the model draws ``codes_per_step = c``
codes per step) and ``decoder`` (code map + coarse image -> HR image). Only this
module knows the cache layout (``past_k_{i}`` and ``past_v_{i}`` both (t, heads, d, P): the
positions filled so far, named in the step graph's metadata) and the index grid
(``index_stride`` cells per LR pixel).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError
from ..fields import read_int, read_number
from ..sampler import Sampler
from ..sessions import arena_policy, last_run_options, shrink_options
from ..tiling import Box, hr_slices
from .base import Architecture, ArchSpec, TileStepHook

#: The step graph's key/value layout, as its ONNX metadata names it: time first and only the
#: filled prefix fed (a view of the cache, no copy), patches last. Earlier graphs took
#: the whole (P, heads, T, d) cache with a mask, or (unmarked) keys as (P, heads, d, T); shapes
#: alone cannot always tell layouts apart, so a graph without this mark is refused.
CACHE_LAYOUT_KEY = "larsr.cache_layout"
CACHE_LAYOUT = "prefix:T,heads,d,P"


@dataclass(frozen=True)
class LarSpec(ArchSpec):
    patch_size: int = 4
    codebook_size: int = 256
    index_stride: int = 2  # index-map cells per LR pixel
    layers: int = 2
    heads: int = 4
    features: int = 48
    # Width of the coarse net's HR feature maps: the largest arrays of a tile.
    coarse_up_features: int = 64
    # Codes drawn per LAR step: token s of a patch carries positions s + j * tokens (j < this).
    codes_per_step: int = 1
    default_temperature: float = 1.0
    default_texture: float = 1.0

    @property
    def positions(self) -> int:
        return self.patch_size**2

    @property
    def tokens(self) -> int:
        """LAR steps per patch, and the length of its key/value cache."""
        return self.positions // self.codes_per_step

    def prev_code_shape(self, hp: int, wp: int) -> tuple[int, ...]:
        """The step graph's ``prev_code``: one code per patch, or a trailing axis of them."""
        return (1, hp, wp) if self.codes_per_step == 1 else (1, hp, wp, self.codes_per_step)


class LarSR(Architecture):
    id = "lar-sr"
    graph_roles = ("coarse", "condition", "lar_step", "decoder")
    stages = ("coarse", "condition", "lar", "decoder")
    structure_stages = ("coarse",)
    arena_roles = ("lar_step",)
    spec: LarSpec

    @classmethod
    def parse_spec(cls, data: Any, where: str, names: Mapping[str, str] | None = None) -> LarSpec:
        """``names`` maps a field to the prefix it has in the user's file when that is not
        ``spec.`` (format 1 kept the LAR fields under ``lar.`` and the rest at the top level), so
        that an error names the key as the user wrote it."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: manifest spec must be an object")

        def p(field: str) -> str:
            return (names or {}).get(field, "spec.")

        layers = read_int(data, "layers", 1, 64, where, p("layers"))
        heads = read_int(data, "heads", 1, 64, where, p("heads"))
        features = read_int(data, "features", 1, 4096, where, p("features"))
        if features % heads:
            raise ModelError(
                f"{where}: manifest {p('features')}features ({features}) must be a multiple of "
                f"{p('heads')}heads ({heads})"
            )
        patch_size = read_int(data, "patch_size", 1, 16, where, p("patch_size"))
        codes_per_step = read_int(
            data, "codes_per_step", 1, patch_size**2, where, p("codes_per_step"), default=1
        )
        if patch_size**2 % codes_per_step:
            raise ModelError(
                f"{where}: manifest {p('codes_per_step')}codes_per_step ({codes_per_step}) must divide "
                f"the {patch_size**2} positions of a patch"
            )
        return LarSpec(
            patch_size=patch_size,
            codebook_size=read_int(data, "codebook_size", 2, 1 << 20, where, p("codebook_size")),
            index_stride=read_int(data, "index_stride", 1, 16, where, p("index_stride"), default=2),
            layers=layers,
            heads=heads,
            features=features,
            coarse_up_features=read_int(
                data, "coarse_up_features", 1, 4096, where, p("coarse_up_features"), default=64
            ),
            codes_per_step=codes_per_step,
            default_temperature=read_number(
                data, "default_temperature", 0.0, 2.0, where, p("default_temperature")
            ),
            default_texture=read_number(
                data, "default_texture", 0.0, 1.0, where, p("default_texture"), default=1.0
            ),
        )

    def check_sessions(self, sessions: dict[str, Any]) -> None:
        check_cache_layout(sessions["lar_step"])

    # -- stages -----------------------------------------------------------------------------------

    def structure(self, lr: np.ndarray) -> np.ndarray:
        return self.sessions["coarse"].run(None, {"lr": lr})[0]

    def empty_shared_arena(self) -> None:
        """A coarse run on the smallest image, with the run options that shrink the arena at its
        end: onnxruntime offers no other way to empty an arena (a few ms)."""
        if arena_policy() != "shared":
            return
        m = 2 * self.spec.index_stride
        tiny = np.zeros((1, 3, m, m), dtype=np.float32)
        self.sessions["coarse"].run(None, {"lr": tiny}, shrink_options())

    def steps(self, texture: float) -> int:
        return self.spec.tokens if texture > 0 else 1

    def _empty_cache(self, patches: int) -> np.ndarray:
        """(layers, keys/values, tokens, heads, d, P): token ``t`` of a layer's keys is one
        contiguous block, and so is every prefix ``[:t]`` the step graph reads. Uninitialised:
        step ``t`` reads only the ``t`` tokens written before it, and zeroing a tile's cache
        (235 MB at 392 px) was a pass over memory of its own once the heap, not fresh mmap
        pages, served it."""
        s = self.spec
        d = s.features // s.heads
        return np.empty((s.layers, 2, s.tokens, s.heads, d, patches), dtype=np.float32)

    def _past_feeds(self, cache: np.ndarray, t: int) -> dict[str, np.ndarray]:
        """The first ``t`` positions of every layer's keys and values, as views."""
        feeds = {}
        for layer in range(self.spec.layers):
            feeds[f"past_k_{layer}"] = cache[layer, 0, :t]
            feeds[f"past_v_{layer}"] = cache[layer, 1, :t]
        return feeds

    def draw_codes(
        self, xc: np.ndarray, index_box: Box, sampler: Sampler, on_step: TileStepHook | None = None
    ) -> np.ndarray:
        """Run the condition net and the cached LAR steps for all patches of a tile; returns the
        index map (1, h2, w2) over ``index_box`` (index cells)."""
        cond, start = self.sessions["condition"].run(None, {"xc": xc})
        return self.draw_on_condition(cond, start, index_box, sampler, on_step)

    def draw_on_condition(
        self,
        cond: np.ndarray,
        start: np.ndarray,
        index_box: Box,
        sampler: Sampler,
        on_step: TileStepHook | None = None,
    ) -> np.ndarray:
        """The cached LAR steps on the condition net's per-patch outputs (each ``(1, hp, wp, ...)``).

        Step ``t`` draws the codes of positions ``t + j * tokens`` (``j < codes_per_step``) of
        every patch, each from its own row of logits with that position's noise."""
        _, hp, wp = cond.shape[:3]
        k, tokens, per_step = self.spec.patch_size, self.spec.tokens, self.spec.codes_per_step
        cache = self._empty_cache(hp * wp)
        feeds = {"cond": cond, "start": start}
        indices = np.empty((1, hp * k, wp * k), dtype=np.int64)  # every position is drawn below
        draw = sampler.tile(index_box, k)
        feeds["prev_code"] = np.zeros(self.spec.prev_code_shape(hp, wp), dtype=np.int64)
        kv_shape = cache.shape[:2] + cache.shape[3:]
        logits_shape = (*self.spec.prev_code_shape(hp, wp), self.spec.codebook_size)  # a row per code
        step = step_runner(self.sessions["lar_step"], logits_shape, kv_shape)
        for t in range(tokens):
            feeds["t"] = np.array([t], dtype=np.int64)
            last = t == tokens - 1  # the tile's last step may empty the step's arena
            run_options = last_run_options() if last else None
            logits, new_kv = step({**feeds, **self._past_feeds(cache, t)}, run_options)
            cache[:, :, t] = new_kv  # four block copies
            positions = tuple(t + slot * tokens for slot in range(per_step))
            codes = draw(logits.reshape(hp * wp, per_step, -1), positions)
            prev = np.ascontiguousarray(codes, dtype=np.int64).reshape(hp, wp, per_step)
            for slot, position in enumerate(positions):
                dy, dx = divmod(position, k)
                indices[0, dy::k, dx::k] = prev[:, :, slot]
            feeds["prev_code"] = prev.reshape(self.spec.prev_code_shape(hp, wp))
            if on_step is not None:
                on_step(t + 1, tokens)
        return indices

    def render_tile(
        self,
        lr: np.ndarray,
        context: Box,
        sampler: Sampler,
        texture: float,
        on_step: TileStepHook | None = None,
    ) -> np.ndarray:
        xc = self.structure(lr)
        self.release_stage_memory()  # the coarse net's feature maps, before the texture peak
        return self.render_on_structure(xc, context, sampler, texture, on_step)

    def render_on_structure(
        self,
        xc: np.ndarray,
        context: Box,
        sampler: Sampler,
        texture: float,
        on_step: TileStepHook | None = None,
        keep: Box | None = None,
    ) -> np.ndarray:
        """Condition net on the whole context, LAR steps on ``keep`` grown by the LAR and decoder
        radii, decoder on ``keep`` grown by its own (``stage_window``): each stage computes only
        what the next one reads. The result covers ``keep``."""
        keep = context if keep is None else keep
        if texture <= 0:  # no texture: the LAR steps and the decoder would be wasted work
            if on_step is not None:
                on_step(1, 1)
            return self._crop_hr(xc, keep, context)
        lar_box = self.stage_window(("lar", "decoder"), keep, context)
        decoder_box = self.stage_window(("decoder",), keep, context)
        cond, start = self.sessions["condition"].run(None, {"xc": xc})
        cond, start = self._crop_patches(cond, lar_box, context), self._crop_patches(start, lar_box, context)
        s = self.spec.index_stride
        index_box = Box(s * lar_box.y0, s * lar_box.y1, s * lar_box.x0, s * lar_box.x1)
        indices = self.draw_on_condition(cond, start, index_box, sampler, on_step)
        del cond, start
        self.release_stage_memory()  # the cache and the step's arena, before the decoder's peak
        inner = decoder_box.relative_to(lar_box)
        indices = np.ascontiguousarray(indices[:, s * inner.y0 : s * inner.y1, s * inner.x0 : s * inner.x1])
        xd = np.ascontiguousarray(self._crop_hr(xc, decoder_box, context))
        sr = self.sessions["decoder"].run(None, {"indices": indices, "xc": xd})[0]
        if texture != 1.0:
            # A blend of the two finished pictures (the clean coarse one and the full one), so
            # that every strength is exactly what export.evaluate scores from those two:
            # clean + texture * (clip(sr) - clean), worked in the decoder's own output array.
            # The same float32 operations in the same order, so the same bits, without three
            # HR-sized temporaries (a 1024 px output: 10.4 -> 3.7 ms; more where the heap was
            # just handed back and every new array faults its pages in).
            clean = np.clip(xd, 0.0, 1.0)
            np.clip(sr, 0.0, 1.0, out=sr)
            sr -= clean
            sr *= np.float32(texture)
            sr += clean
        return self._crop_hr(sr, keep, decoder_box)

    def _crop_hr(self, image: np.ndarray, box: Box, within: Box) -> np.ndarray:
        """The (1, 3, s*h, s*w) view of ``box`` in an HR image of the LR window ``within``."""
        if box == within:
            return image
        rows, cols = hr_slices(box, within, self.scale)
        return image[:, :, rows, cols]

    def _crop_patches(self, per_patch: np.ndarray, box: Box, within: Box) -> np.ndarray:
        """A per-patch map (1, hp, wp, ...) of the LR window ``within``, cut to ``box`` (whose
        corners sit on the patch grid: the tile multiple)."""
        if box == within:
            return per_patch
        lr_per_patch = self.spec.patch_size // self.spec.index_stride
        r = box.relative_to(within)
        if any(v % lr_per_patch for v in (r.y0, r.y1, r.x0, r.x1)):
            raise ValueError(f"stage window {box} is off the patch grid of {within}")
        p = lr_per_patch
        return np.ascontiguousarray(per_patch[:, r.y0 // p : r.y1 // p, r.x0 // p : r.x1 // p])

    def bytes_per_lr_pixel(self) -> int:
        """The whole chain on one tile: the coarse net runs first and its feature maps are gone
        before the texture stages start, so the larger of the two passes, not their sum."""
        return max(self.structure_bytes_per_lr_pixel(), self.texture_bytes_per_lr_pixel())

    def structure_bytes_per_lr_pixel(self) -> int:
        """The coarse net alone: six full-resolution feature maps' worth. Four are alive at its
        peak (round 4's 24-channel head: 5.4-7.0 KB per LR px measured as peak RSS sampled every
        millisecond, 7.2 KB estimated with four); the other two are what the heap holds on top
        when it, not a fresh mmap per tensor, serves the blocks (``heap.serve_large_blocks_from_heap``):
        larsr-x4 round 6 (16 channels) peaked at 3.9-6.2 KB per px alone and 6.5 KB in a
        structure strip after smaller images, and with four maps (5.1 KB) a 4096 px output after
        three 256 px ones peaked at 1635 MiB in one strip; with six (7.2 KB), 1289 MiB."""
        return 6 * self.scale**2 * self.spec.coarse_up_features * 4 + 1024

    def texture_bytes_per_lr_pixel(self) -> int:
        """Condition, LAR steps and decoder on a given structure image, per patch of the tile:
        the key/value cache three times (the cache itself; the step graph's products over the
        filled prefix, one for keys and one for values; the heap's share of what earlier stages
        freed in blocks the cache cannot reuse), the per-token condition vectors and one step's
        logits. Per token, not per position: a model drawing ``c`` codes per step has ``1/c`` of
        the cache and condition. larsr-x4 round 6 (two codes per step): 6.7 KB estimated; peak
        RSS minus base, output and structure window measured 6.5 KB per context px for a 4096 px
        output in 8 tiles and 6.6 KB for a 448 px input as one tile (heap allocations,
        ``serve_large_blocks_from_heap``); the LAR stage alone peaks at 4.3 KB (1 ms RSS sampler,
        256-384 px)."""
        s = self.spec
        patches_per_px = s.index_stride**2 / s.positions
        cache = s.tokens * s.layers * 2 * s.features * 4
        cond = s.tokens * s.features * 4
        logits = s.codes_per_step * s.codebook_size * 4
        structure = 3 * self.scale**2 * 4  # the tile's structure image
        return int(patches_per_px * (3 * cache + cond + logits)) + structure + 1024


StepRun = Callable[[dict[str, np.ndarray], Any], tuple[np.ndarray, np.ndarray]]


def step_runner(session: Any, logits_shape: tuple[int, ...], kv_shape: tuple[int, ...]) -> StepRun:
    """``run(feeds, run_options) -> (logits, new_kv)`` for every step of one tile.

    On an onnxruntime session both outputs go into two numpy buffers made once per tile (an
    IOBinding), not into the session's arena. Why: outputs that onnxruntime allocates stay alive
    in Python after the tile's last run, so that run's arena shrink could not free the region
    holding them, and the arena kept 500-640 MiB through the next band's structure strips and
    the decoder (a 4096 px output peaked at 1516 MiB with a 5 KB/px texture estimate). The
    buffers are views the caller must use up before the next step. A stand-in session without
    ``io_binding`` (tests; the quantiser's feed recorder, which must see every feed) is run
    plainly; one that wraps a real session (the benchmarks' timer) forwards both calls.
    """
    if getattr(session, "io_binding", None) is None:
        return lambda feeds, options: tuple(session.run(None, feeds, options))
    names = [o.name for o in session.get_outputs()]
    buffers = [np.empty(logits_shape, np.float32), np.empty(kv_shape, np.float32)]
    binding = session.io_binding()
    for name, buf in zip(names, buffers, strict=True):
        binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)

    def run(feeds: dict[str, np.ndarray], options: Any) -> tuple[np.ndarray, np.ndarray]:
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        session.run_with_iobinding(binding, options)
        return buffers[0], buffers[1]

    return run


def check_cache_layout(step: Any) -> None:
    """Refuse a step graph whose cache layout is not ``CACHE_LAYOUT`` (one ``ModelError`` line)."""
    meta = getattr(step, "get_modelmeta", None)
    if meta is None:  # a stand-in session (tests, profilers) vouches for itself
        return
    layout = meta().custom_metadata_map.get(CACHE_LAYOUT_KEY)
    if layout != CACHE_LAYOUT:
        found = f"layout {layout!r}" if layout else "no cache-layout mark (exported by an earlier larsr)"
        raise ModelError(
            f"lar_step graph has {found}; this larsr feeds a {CACHE_LAYOUT} cache: re-export the "
            "model with this version's python -m export.to_onnx"
        )
