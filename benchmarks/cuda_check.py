"""The CUDA end-to-end check of issue 11, as one prepared script for a lent GPU machine.

Why a script of its own: device time is short (minutes, starts included) and the machine has
onnxruntime and numpy but maybe none of larsr's image libraries, so this needs no image file and
no install: it asks onnxruntime for its providers, and only if CUDA is among them runs the
shipped model on ``--device`` and on the CPU and records what a GPU user would ask first:

- correct pixels: the coarse image (a plain regression net) within fp tolerance of the CPU's,
  and how many output pixels of the full chain (T=0.6, same seed) differ by more than 2/255 (the
  sampled codes may flip where two are near-tied in fp32, so this is a fraction, not a bound);
- seconds per output Mpx for a 256 px input, and for a 1024 px input with ``--tile auto``
  (a 4096 px output) with its tile count, against the CPU's 256 px rate in the same run.

Without a CUDA provider it records that and exits 0: knowing is the result.

    python -m benchmarks.cuda_check [--device cuda] [--out DIR] [--sizes 256,1024]

``--device cpu`` runs the same path on the CPU (the check of this script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from larsr_cli.atomic import atomic_write

# Not benchmarks.common: it imports Pillow and export/, which a bare GPU machine may lack.
REPO_DIR = Path(__file__).resolve().parents[1]
MODEL = REPO_DIR / "models" / "larsr-x4"
RESULTS = REPO_DIR / "benchmarks" / "results"
SCALE = 4


def photo_like(size: int, seed: int = 0) -> np.ndarray:
    """A size x size float32 RGB input with edges and texture at several scales (no image file:
    the GPU machine may lack Pillow). Speed does not depend on content; the pixel comparison only
    needs detail for the texture stages to act on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 0.5 + 0.25 * np.sin(2 * np.pi * (3 * x + 2 * y))[..., None] * np.array([1.0, 0.8, 0.6], np.float32)
    edges = ((x * 7).astype(int) + (y * 5).astype(int)) % 2 * 0.2
    noise = rng.random((size, size, 3), dtype=np.float32) * 0.15
    return np.clip(base + edges[..., None] + noise, 0.0, 1.0).astype(np.float32)


def timed(upscaler: Any, lr: np.ndarray, repeats: int = 2) -> tuple[float, np.ndarray]:
    """Fastest of ``repeats`` runs (the first one on a GPU also builds its kernels), seconds."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = upscaler.upscale_array(lr, seed=1, temperature=0.6, tile="auto", out_dtype=np.uint8)
        best = min(best, time.perf_counter() - start)
    assert out is not None
    return best, out


def check(device: str, sizes: Sequence[int], threads: int | None, model: Path = MODEL) -> dict[str, Any]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    result: dict[str, Any] = {
        "providers": providers,
        "device": device,
        "cuda": "CUDAExecutionProvider" in providers,
        "onnxruntime": ort.__version__,
    }
    if device.startswith("cuda") and not result["cuda"]:
        return result
    try:
        from larsr_cli.pipeline import Upscaler
    except ImportError as exc:  # a bare GPU machine: say which runtime dependency it lacks
        result["missing"] = str(exc)
        return result
    on_device = Upscaler(model, device=device, threads=threads, precision="fp32")
    on_cpu = Upscaler(model, device="cpu", threads=threads, precision="fp32")
    result["device_label"] = on_device.device.label

    small = photo_like(sizes[0])
    coarse_gap = np.abs(on_device.coarse_array(small) - on_cpu.coarse_array(small))
    result["coarse_max_abs_diff"] = float(coarse_gap.max())
    cpu_s, cpu_out = timed(on_cpu, small)
    dev_s, dev_out = timed(on_device, small)
    differ = np.abs(dev_out.astype(np.int16) - cpu_out.astype(np.int16)).max(axis=2) > 2
    result["full_chain_pixels_differing_over_2_of_255"] = float(differ.mean())
    mpx = (SCALE * sizes[0]) ** 2 / 1e6
    rates = [{"input": sizes[0], "tiles": 1, "cpu_s_per_mpx": cpu_s / mpx, "device_s_per_mpx": dev_s / mpx}]
    for size in sizes[1:]:
        lr = photo_like(size, seed=size)
        seconds, _ = timed(on_device, lr, repeats=1)
        mpx = (SCALE * size) ** 2 / 1e6
        tiles = len(on_device.plan(size, size, "auto"))
        rates.append({"input": size, "tiles": tiles, "device_s_per_mpx": seconds / mpx})
        print(f"  {size} px: {seconds:.2f} s in {tiles} tiles", file=sys.stderr, flush=True)
    result["rates"] = rates
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (checks this script)")
    parser.add_argument("--sizes", default="256,1024", help="input sizes; the first is compared with the CPU")
    parser.add_argument("--model", type=Path, default=MODEL, help="model folder (default the shipped one)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="cuda_check")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 8:
        raise SystemExit("--sizes: comma-separated input sizes of at least 8 px")
    result = check(args.device, sizes, args.threads, args.model)
    result.update(
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(["python -m benchmarks.cuda_check", *(sys.argv[1:] if argv is None else argv)]),
        machine={
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    )
    with atomic_write(args.out / f"{args.name}.json", overwrite=True) as fh:
        fh.write((json.dumps(result, indent=1) + "\n").encode())
    print(f"cuda: {result['cuda']}; {result.get('rates', result.get('missing', 'no runs'))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
