"""Quality of x4 super-resolution on the held-out photos: larsr against bicubic and the peers.

Every method gets the same input: the validation photo (centre crop), downscaled x4 with the
project's one degradation (``export.degrade.bicubic_downscale``) and rounded to 8 bit, exactly as in
training. Every output is rounded to 8 bit before scoring, because that is the file a user gets.

Scores: PSNR-Y and SSIM-Y with a 4 px border cut (``export.metrics``), LPIPS-alex v0.1 on the whole
image (``export.lpips``), LR-consistency (the output downscaled again against the input, dB), and
for the sampled larsr outputs the diversity across seeds (mean per-pixel standard deviation on the
0-255 scale, and mean pairwise LPIPS). Methods: bicubic (PIL), the peers when installed, larsr's
coarse SR alone (its ``coarse`` graph), larsr at T=0, and larsr at the manifest's default T.

    python -m benchmarks.quality --model models/larsr-x4 --images data/photos --out benchmarks/results
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.common import (
    DEFAULT_RESULTS,
    BenchError,
    Peer,
    check_photos,
    command_line,
    installed_peers,
    load_png,
    log,
    machine_info,
    model_info,
    open_upscaler,
    run_main,
    run_peer,
    save_png,
    select_peers,
    write_json,
    write_text,
)
from export.degrade import bicubic_upscale, quantize_8bit, to_uint8
from export.scoring import BORDER, SCALE, SETS, Scorer, load_set

BICUBIC_NOTE = "PIL Image.resize BICUBIC (Keys a=-0.5, the same kernel as the degradation), float per channel"


@dataclass
class Method:
    """One column of the comparison; ``outputs[name]`` holds one image, or one per seed."""

    key: str
    label: str
    stochastic: bool = False
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, output: np.ndarray, seconds: float) -> None:
        """One more output for image ``name`` (a further seed for a sampled method)."""
        self.outputs.setdefault(name, []).append(output)
        self.seconds.append(seconds)


# --------------------------------------------------------------------------------------------
# Arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/larsr-x4", help="larsr model folder")
    parser.add_argument("--images", default="data/photos", help="photo folder (export.data fetch)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    parser.add_argument(
        "--max-side", type=int, default=256, help="HR centre-crop side (default 256; 0 = full photos)"
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N validation photos (0 = all)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds for the default-T samples (default 0,1,2)")
    parser.add_argument("--temperature", type=float, help="override the manifest's default temperature")
    parser.add_argument("--peers", nargs="*", default=["all"], help="realesrgan, dat, all (default) or none")
    parser.add_argument("--threads", type=int, help="CPU threads for larsr and the peers (default: all)")
    parser.add_argument("--tile", default="auto", help="larsr tile size in LR px (default auto)")
    parser.add_argument("--crop", type=int, default=128, help="side of the HR crop shown in crops.png")
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour zoom of crops.png cells")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS and DISTS (no torch needed)")
    parser.add_argument(
        "--set",
        dest="which",
        choices=SETS,
        default="val",
        help="val: the held-out wallpapers (centre crops); detail: faces, fur, text, buildings (128 px)",
    )
    parser.add_argument(
        "--crop-rows",
        nargs="*",
        default=[],
        help="name fragments of the photos shown in crops.png (default: the first three)",
    )
    args = parser.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if len(args.seed_list) < 2:
        raise BenchError("--seeds needs at least two seeds to measure diversity")
    return args


# --------------------------------------------------------------------------------------------
# Methods


def larsr_coarse(upscaler: Any, lr: np.ndarray) -> np.ndarray:
    """Only the ``coarse`` graph, on the whole image: the regression baseline inside larsr."""
    return upscaler.coarse_array(lr)


def larsr_full(upscaler: Any, lr: np.ndarray, seed: int, temperature: float, tile: str) -> np.ndarray:
    return upscaler.upscale_array(lr, seed=seed, temperature=temperature, tile=tile, out_dtype=np.float32)


def timed(fn: Any, *args: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args)
    elapsed = time.perf_counter() - start  # rounding to 8 bit is scoring, not the method's time
    return quantize_8bit(out), elapsed


def run_larsr(
    upscaler: Any, images: list[tuple[str, np.ndarray]], temperature: float, seeds: list[int], tile: str
) -> list[Method]:
    """The three larsr columns: coarse alone, T=0, and the default T over several seeds."""
    coarse = Method("larsr_coarse", "larsr coarse SR")
    texture = upscaler.default_texture
    t0 = Method("larsr_t0", f"larsr T=0 S={texture:g}")
    tdef = Method(
        "larsr_tdef", f"larsr T={temperature:g} S={texture:g}", stochastic=True, info={"seeds": seeds}
    )
    for name, lr in images:
        log(f"  larsr: {name}")
        coarse.add(name, *timed(larsr_coarse, upscaler, lr))
        t0.add(name, *timed(larsr_full, upscaler, lr, 0, 0.0, tile))
        for seed in seeds:
            tdef.add(name, *timed(larsr_full, upscaler, lr, seed, temperature, tile))
    return [coarse, t0, tdef]


def run_bicubic(images: list[tuple[str, np.ndarray]]) -> Method:
    method = Method("bicubic", "bicubic (PIL)", info={"implementation": BICUBIC_NOTE})
    for name, lr in images:
        method.add(name, *timed(bicubic_upscale, lr, SCALE))
    return method


def run_peers(
    peers: list[Peer], images: list[tuple[str, np.ndarray]], threads: int | None, notes: list[str]
) -> list[Method]:
    """Each installed peer upscales the same 8-bit LR PNGs in its own venv; missing ones are noted."""
    methods: list[Method] = []
    with tempfile.TemporaryDirectory(prefix="larsr-bench-") as tmp:
        lr_dir = Path(tmp) / "lr"
        lr_dir.mkdir()
        for name, lr in images:
            save_png(lr, lr_dir / f"{name}.png")
        for peer in installed_peers(peers, notes):
            log(f"  {peer.label}: {len(images)} images")
            out_dir = Path(tmp) / peer.key
            try:
                report = run_peer(peer, lr_dir, out_dir, repeats=1, threads=threads)
            except BenchError as exc:  # a broken peer costs its column, not the whole run
                notes.append(f"skipped {exc}")
                log(f"  {exc}: skipped")
                continue
            method = Method(peer.key, peer.label, info={k: v for k, v in report.items() if k != "seconds"})
            for name, _ in images:
                method.outputs[name] = [load_png(out_dir / f"{name}.png")]
                method.seconds.extend(report["seconds"][f"{name}.png"])
            methods.append(method)
    return methods


# --------------------------------------------------------------------------------------------
# Scores


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def score_method(
    method: Method, images: list[tuple[str, np.ndarray, np.ndarray]], scorer: Scorer
) -> dict[str, Any]:
    """Per-image scores (means over seeds for sampled methods) and their mean over images."""
    per_image: dict[str, dict[str, float | None]] = {}
    for name, hr, lr in images:
        outs = method.outputs[name]
        scores = [scorer.score(sr, hr, lr) for sr in outs]
        row = {k: _mean([s[k] for s in scores]) for k in scores[0]}
        if method.stochastic:
            row.update(scorer.diversity(outs))
            row["per_seed"] = scores  # type: ignore[assignment]
        per_image[name] = row
    keys = ["psnr_y", "ssim_y", "lpips", "dists", "lr_db", "stripes", "stripes_hr"]
    keys += ["div_std", "div_lpips"] if method.stochastic else []
    return {
        "key": method.key,
        "label": method.label,
        "stochastic": method.stochastic,
        "mean": {k: _mean([per_image[n][k] for n in per_image]) for k in keys},
        "seconds_per_image": _mean(list(method.seconds)),
        "info": method.info,
        "per_image": per_image,
    }


# --------------------------------------------------------------------------------------------
# The side-by-side picture


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fitted_font(draw: ImageDraw.ImageDraw, text: str, width: int) -> Any:
    """The largest default-font size (13 down to 8) at which ``text`` fits in ``width`` px."""
    for size in range(13, 7, -1):
        font = _font(size)
        if draw.textlength(text, font=font) <= width:
            return font
    return font


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    side = min(side, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def crop_columns(methods: list[Method]) -> list[tuple[str, str, int]]:
    """(label, method key, output index) per column after HR: two seeds for the sampled method."""
    cols: list[tuple[str, str, int]] = []
    for m in methods:
        if m.stochastic:
            seeds = m.info.get("seeds", [0, 1])
            cols += [(f"{m.label} s{seeds[i]}", m.key, i) for i in range(min(2, len(seeds)))]
        else:
            cols.append((m.label, m.key, 0))
    return cols


def crops_picture(
    rows: list[tuple[str, np.ndarray]], methods: list[Method], crop: int, zoom: int
) -> Image.Image:
    """Rows: validation crops; columns: HR, then every method, labelled with Pillow's ImageDraw."""
    by_key = {m.key: m for m in methods}
    cols = [("HR", "", 0), *crop_columns(methods)]
    side = min(crop, *(min(hr.shape[:2]) for _, hr in rows)) * zoom
    head, gap = 22, 4
    width = len(cols) * side + (len(cols) - 1) * gap
    height = head + len(rows) * side + (len(rows) - 1) * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    for c, (label, _, _) in enumerate(cols):
        draw.text((c * (side + gap) + 2, 4), label, fill="black", font=_fitted_font(draw, label, side - 4))
    for r, (name, hr) in enumerate(rows):
        y = head + r * (side + gap)
        for c, (_, key, idx) in enumerate(cols):
            img = hr if not key else by_key[key].outputs[name][idx]
            cell = Image.fromarray(to_uint8(_centre_crop(img, side // zoom)))
            canvas.paste(cell.resize((side, side), Image.Resampling.NEAREST), (c * (side + gap), y))
        short = name.split("__")[-1]
        tw = draw.textlength(short, font=font)
        draw.rectangle((0, y + side - 18, tw + 8, y + side), fill="black")
        draw.text((4, y + side - 17), short, fill="white", font=font)
    return canvas


# --------------------------------------------------------------------------------------------
# Main


def load_images(
    photos: str, max_side: int, limit: int, which: str = "val"
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) of one validation set (``export.scoring.load_set``)."""
    try:
        return load_set(check_photos(photos), which, max_side, limit)
    except (FileNotFoundError, ValueError) as exc:
        raise BenchError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    peers = select_peers(args.peers)
    upscaler = open_upscaler(args.model, args.threads)
    temperature = upscaler.default_temperature if args.temperature is None else float(args.temperature)
    images = load_images(args.images, args.max_side, args.limit, args.which)
    lr_images = [(name, lr) for name, _, lr in images]
    log(f"{len(images)} validation photos, HR up to {args.max_side or 'full'} px")
    methods = [run_bicubic(lr_images)]
    methods += run_peers(peers, lr_images, args.threads, notes)
    methods += run_larsr(upscaler, lr_images, temperature, args.seed_list, args.tile)
    log("scoring")
    scorer = Scorer(not args.no_lpips, notes)
    scored = [score_method(m, images, scorer) for m in methods]
    args.out.mkdir(parents=True, exist_ok=True)
    crop_rows = [(name, hr) for name, hr, _ in images[:3]]
    if args.crop_rows:
        crop_rows = [next((n, hr) for n, hr, _ in images if frag in n) for frag in args.crop_rows]
    suffix = "" if args.which == "val" else f"-{args.which}"
    # crops.png is the picture of the set that gates the bars (faces, fur, text, thin edges);
    # the soft wallpapers' picture is crops-val.png.
    crops_name = "crops.png" if args.which == "detail" else f"crops-{args.which}.png"
    crops_picture(crop_rows, methods, args.crop, args.zoom).save(args.out / crops_name, optimize=True)
    result = {
        "kind": "quality",
        "command": command_line("benchmarks.quality", argv),
        "machine": machine_info(),
        "model": model_info(upscaler),
        "settings": {
            "split": (
                "val: export.data.VAL_PHOTOS, centre crops"
                if args.which == "val"
                else "detail: export/detail-crops.json (faces, fur, text, buildings, foliage, fabric)"
            ),
            "max_side": args.max_side,
            "images": [
                {"name": n, "hr": list(hr.shape[:2]), "lr": list(lr.shape[:2])} for n, hr, lr in images
            ],
            "crops_rows": [n for n, _ in crop_rows],
            "degradation": "export.degrade.bicubic_downscale x4, then rounded to 8 bit",
            "outputs": "every output rounded to 8 bit before scoring",
            "border": BORDER,
            "temperature": temperature,
            "seeds": args.seed_list,
            "tile": args.tile,
            "bicubic": BICUBIC_NOTE,
            "lpips": "alex v0.1 (export.lpips), whole image" if scorer.lpips is not None else None,
        },
        "methods": scored,
        "notes": notes,
    }
    write_json(args.out / f"quality{suffix}.json", result)
    from benchmarks.report import quality_markdown

    write_text(args.out / f"quality{suffix}.md", quality_markdown(result))
    log(f"wrote {args.out / f'quality{suffix}.json'}, quality{suffix}.md and {crops_name}")
    print(quality_markdown(result, with_details=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
