"""One scorer and the two validation sets, shared by ``export.evaluate`` and ``benchmarks.quality``.

Two sets, because the first model was chosen on one that could be gamed:
- ``val``: the fixed held-out photos (``export.data.VAL_PHOTOS``), mostly soft wallpapers: centre
  crops up to 256 px. Kept so numbers stay comparable with earlier models.
- ``detail``: fixed 128 px crops of faces, fur, text, buildings, foliage and fabric
  (``export/detail-crops.json``), cut from whole packages that no training run reads
  (``export.data.DETAIL_PACKAGES``). Defaults are chosen and bars gated on this one.

Scores per output: PSNR-Y / SSIM-Y (4 px border), LPIPS-alex v0.1, DISTS, LR-consistency and the
stripe score (``export.metrics.stripe_score``, reported with the HR photo's own as ``stripes_hr``).
LPIPS is reported but never selects: the VQ-VAE has trained on LPIPS-family losses. DISTS is no
training loss here, so it is the perceptual metric that picks defaults.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from larsr_cli.errors import one_line

from .data import _center_crop, make_pair, prepared_photo, read_manifest, val_images
from .degrade import lr_consistency_db
from .metrics import psnr_y, ssim_y, stripe_score

BORDER = 4
SCALE = 4
DETAIL_CROPS = Path(__file__).with_name("detail-crops.json")
SETS = ("val", "detail")


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def detail_images(photos_dir: Path | str) -> list[tuple[str, np.ndarray]]:
    """The detail-rich crops as (name@x,y, HR float32 HxWx3 on the 8-bit grid)."""
    spec = json.loads(DETAIL_CROPS.read_text(encoding="utf-8"))
    size = int(spec["size"])
    entries = {str(e["name"]): e for e in read_manifest(photos_dir)}
    out = []
    for crop in spec["crops"]:
        entry = entries.get(crop["name"])
        if entry is None:
            raise FileNotFoundError(
                f"{crop['name']} missing from {photos_dir}: run `python -m export.data fetch`"
            )
        img = prepared_photo(photos_dir, entry)
        x, y = int(crop["x"]), int(crop["y"])
        patch = img[y : y + size, x : x + size]
        if patch.shape[:2] != (size, size):
            raise ValueError(f"detail crop {crop} falls outside {crop['name']}")
        out.append((f"{crop['name']}@{x},{y}", patch.astype(np.float32) / 255.0))
    return out


def load_set(
    photos_dir: Path | str, which: str = "val", max_side: int = 256, limit: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) for one validation set; LR is the canonical degradation rounded to 8 bit."""
    if which == "val":
        found = val_images(photos_dir, max_side=max_side or None, multiple=SCALE)
    elif which == "detail":
        found = [(n, _center_crop(hr, None, SCALE)) for n, hr in detail_images(photos_dir)]
    else:
        raise ValueError(f"unknown validation set {which!r}; choose from {', '.join(SETS)}")
    if not found:
        raise FileNotFoundError(f"no {which} photos in {photos_dir}")
    found = found[:limit] if limit > 0 else found
    return [(name, hr, make_pair(hr, SCALE)[0]) for name, hr in found]


class Scorer:
    """All per-image scores; the torch metrics are optional so the rest runs without torch."""

    def __init__(self, use_perceptual: bool = True, notes: list[str] | None = None) -> None:
        self.lpips: Any = None
        self.dists: Any = None
        notes = notes if notes is not None else []
        if not use_perceptual:
            notes.append("LPIPS and DISTS skipped")
            return
        try:
            import torch

            from .dists import DISTS
            from .lpips import LPIPS

            self._torch = torch
            self.lpips = LPIPS.from_converted("alex")
            self.dists = DISTS()
        except (ImportError, FileNotFoundError, ValueError) as exc:
            notes.append(f"perceptual metrics skipped: {one_line(exc)}")

    def _pair(self, a: np.ndarray, b: np.ndarray) -> tuple[Any, Any]:
        torch = self._torch
        ta = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]
        tb = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1), dtype=np.float32))[None]
        return ta, tb

    def lpips_dist(self, a: np.ndarray, b: np.ndarray) -> float | None:
        if self.lpips is None:
            return None
        with self._torch.no_grad():
            return float(self.lpips(*self._pair(a, b))[0])

    def dists_dist(self, a: np.ndarray, b: np.ndarray) -> float | None:
        if self.dists is None:
            return None
        return float(self.dists(*self._pair(a, b))[0])

    def score(self, sr: np.ndarray, hr: np.ndarray, lr: np.ndarray) -> dict[str, float | None]:
        return {
            "psnr_y": _finite(psnr_y(sr, hr, border=BORDER)),
            "ssim_y": _finite(ssim_y(sr, hr, border=BORDER)),
            "lpips": self.lpips_dist(sr, hr),
            "dists": self.dists_dist(sr, hr),
            "lr_db": _finite(lr_consistency_db(sr, lr, SCALE)),
            "stripes": _finite(stripe_score(sr)),
            "stripes_hr": _finite(stripe_score(hr)),
        }

    def diversity(self, samples: list[np.ndarray]) -> dict[str, float | None]:
        """How different the seeds' outputs are: pixel std (0-255) and mean pairwise LPIPS."""
        stack = np.stack(samples, axis=0).astype(np.float64)
        pix_std = float(stack.std(axis=0).mean() * 255.0)
        pairs = [self.lpips_dist(a, b) for a, b in itertools.combinations(samples, 2)]
        pair_lpips = None if any(p is None for p in pairs) else float(np.mean(pairs))
        return {"div_std": pix_std, "div_lpips": pair_lpips}
