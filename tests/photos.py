"""Synthetic photos and a fetched-looking photo folder for the data and training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from export import data


def synthetic_photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth structure plus noise: something a network can learn a little from in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx / 5.0 + seed) * np.cos(yy / 9.0)
    arr = base[..., None] + rng.normal(0, 10, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_photo_folder(folder: Path) -> Path:
    """Two train photos (one JPEG-sourced), one validation photo, one from a dropped package."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [
        ("mate-backgrounds__Aqua", 200, 240, True),
        ("lxqt-themes__beam", 160, 150, False),
        ("palapeli-data__european-honey-bee", 300, 260, True),
        ("kphotoalbum__pool", 180, 180, True),
    ]
    entries = []
    for i, (name, h, w, jpeg) in enumerate(specs):
        Image.fromarray(synthetic_photo(h, w, i)).save(folder / f"{name}.png")
        entries.append(
            {
                "file": f"{name}.png",
                "name": name,
                "package": name.split("__")[0],
                "width": w,
                "height": h,
                "sha256": f"{i:064x}",
                "jpeg_source": jpeg,
            }
        )
    (folder / data.MANIFEST_NAME).write_text(json.dumps({"photos": entries}))
    return folder
