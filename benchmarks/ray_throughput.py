"""Images per second of ``larsr upscale --ray`` with 1 and 2 workers, and memory per actor.

A real two-node Ray cluster is started on this machine (``tests/ray_cluster.py``: ``ray start
--head`` plus a second node, 1 CPU each), the same batch is run through the Python entry point
``upscale_on_ray`` with a pool of 1 and then 2 actors, and the cluster is stopped. Per run:

- wall seconds of the whole run (actor start-up and model load included) and images per second;
- the steady rate: images finished after each worker's first one, over the time they took, which
  is what a long run on many machines converges to;
- peak resident memory of each actor process (VmHWM from /proc, sampled while the run goes; the
  actors are found with Ray's state API).

The prediction for N machines is N times the steady 1-worker rate (one 1-CPU worker per machine):
the job is embarrassingly parallel (one image per task, no shuffle), so the cluster's rate scales
with the actors until the shared filesystem or the driver's bookkeeping becomes the limit. The
1 -> 2 efficiency measured here is printed beside it as a floor.

On this 2-core box both "nodes" share the same two cores (with whatever else runs, recorded as the
load average), so the 2-worker figure is a lower bound of what two real machines would give.

    python -m benchmarks.ray_throughput --images 24 --size 96
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import (
    DEFAULT_RESULTS,
    REPO_DIR,
    command_line,
    log,
    machine_info,
    run_main,
    write_json,
    write_text,
)

CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The SIMD flags onnxruntime's kernels pick from: they decide the per-core speed."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def make_photos(folder: Path, count: int, size: int) -> list[Path]:
    """Smooth random photos (noise upscales unrealistically fast through JPEG-free PNG paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        path = folder / f"photo{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


def _vm_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class ActorMemory(threading.Thread):
    """Samples the peak RSS of our actors every half second while a run goes."""

    def __init__(self, dashboard: str) -> None:
        super().__init__(daemon=True)
        self.dashboard = dashboard
        self.peaks: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from ray.util.state import list_actors

        while not self.stop.is_set():
            try:
                actors = list_actors(address=self.dashboard, limit=1000, raise_on_missing_output=False)
            except Exception:  # the state API is briefly unavailable while the cluster is busy
                actors = []
            for actor in actors:
                if "UpscaleWorker" in (actor.class_name or "") and actor.state == "ALIVE" and actor.pid:
                    peak = _vm_hwm_mib(actor.pid)
                    if peak:
                        self.peaks[actor.pid] = max(peak, self.peaks.get(actor.pid, 0.0))
            self.stop.wait(0.5)


def run_once(
    cluster: Any, photos: list[Path], out: Path, model: str, workers: int, tile: str
) -> dict[str, Any]:
    import ray

    from larsr_cli.distributed import upscale_on_ray

    stamps: list[float] = []

    def progress(done: int, total: int | None, rate: float) -> None:
        if done > len(stamps):
            stamps.extend([time.perf_counter()] * (done - len(stamps)))

    sampler = ActorMemory(cluster.dashboard)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        sampler.start()
        start = time.perf_counter()
        summary = upscale_on_ray(
            [str(p) for p in photos],
            f"{out}/",
            model=model,
            workers=workers,
            tile=int(tile) if tile.isdigit() else tile,
            progress=progress,
        )
        wall = time.perf_counter() - start
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
        ray.shutdown()
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} images failed: {summary.failed[0].reason}")
    steady = None
    if len(stamps) > workers:
        span = stamps[-1] - stamps[workers - 1]
        steady = (len(stamps) - workers) / span if span > 0 else None
    return {
        "workers": workers,
        "images": len(photos),
        "wall_s": round(wall, 2),
        "images_per_s": round(len(photos) / wall, 3),
        "steady_images_per_s": round(steady, 3) if steady else None,
        "seconds_per_image_per_worker": round(workers / steady, 2) if steady else None,
        "actor_peak_rss_mib": sorted(round(v, 1) for v in sampler.peaks.values()),
        "device": summary.device,
    }


def scaling(rows: list[dict[str, Any]]) -> float | None:
    """Steady rate of the widest run over (its workers x the 1-worker rate): 1.0 is linear."""
    one = next((r for r in rows if r["workers"] == 1 and r["steady_images_per_s"]), None)
    widest = max((r for r in rows if r["steady_images_per_s"]), key=lambda r: r["workers"], default=None)
    if not one or not widest or widest["workers"] == 1:
        return None
    return round(widest["steady_images_per_s"] / (widest["workers"] * one["steady_images_per_s"]), 3)


def predict(rows: list[dict[str, Any]], machines: Sequence[int]) -> list[dict[str, Any]]:
    """N machines with one 1-CPU worker each, each as fast as the 1-worker run here: N x that
    rate. Independent images, one per task, no shuffle: nothing but the shared storage and the
    driver's bookkeeping is shared, so linear is the expectation on separate machines; the
    efficiency measured here (both nodes on the same cores) is printed beside it as a floor."""
    one = next((r for r in rows if r["workers"] == 1 and r["steady_images_per_s"]), None)
    if one is None:
        return []
    eff = scaling(rows)
    return [
        {
            "machines": n,
            "images_per_s": round(one["steady_images_per_s"] * n, 2),
            "images_per_s_at_measured_efficiency": round(
                one["steady_images_per_s"] * n * (eff if n > 1 else 1), 2
            )
            if eff
            else None,
        }
        for n in machines
    ]


def render_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "## Ray throughput (`larsr upscale --ray`, CPU)",
        "",
        f"{data['settings']['images']} images of {data['settings']['size']}² px -> "
        f"{4 * data['settings']['size']}² px, model {data['settings']['model']}, tile "
        f"{data['settings']['tile']}; a two-node Ray {data['ray']} cluster on one machine (1 CPU per node, "
        "1 onnxruntime thread per actor).",
        "",
        "| workers | wall s | images/s (wall) | steady images/s | s/image/worker | actor peak RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in data["rows"]:
        rss = ", ".join(f"{v:.0f}" for v in r["actor_peak_rss_mib"]) or "n/a"
        lines.append(
            f"| {r['workers']} | {r['wall_s']} | {r['images_per_s']} | {r['steady_images_per_s']} | "
            f"{r['seconds_per_image_per_worker']} | {rss} |"
        )
    if data["prediction"]:
        eff = data["scaling_efficiency"]
        lines += [
            "",
            f"Scaling efficiency 1 -> {max(r['workers'] for r in data['rows'])} workers here: "
            f"{eff if eff is not None else 'n/a'} (1.0 = linear; both nodes share this machine's cores).",
            "",
            "Predicted steady rate on N machines with one 1-CPU worker each: N x the 1-worker rate, "
            "and the same at the 1 -> 2 efficiency measured here (a floor: here both nodes share "
            "the cores and a training run):",
            "",
            "| machines | images/s | at measured efficiency |",
            "| ---: | ---: | ---: |",
        ]
        lines += [
            f"| {p['machines']} | {p['images_per_s']} | {p['images_per_s_at_measured_efficiency']} |"
            for p in data["prediction"]
        ]
    lines += [
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} cores (flags: {', '.join(data['cpu_flags'])}), "
        f"{m['ram_gib']} GiB, load average {m['load_average']} at the start, {m['date']}.",
        "",
        f"Command: `{data['command']}`",
        "",
    ]
    lines += [f"- Note: {note}" for note in data["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=96, help="LR side in pixels")
    parser.add_argument("--model", default="models/larsr-x4", help="relative to the repository")
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--workers", default="1,2", help="pool sizes to measure, comma-separated")
    parser.add_argument("--machines", default="1,2,8,32")
    parser.add_argument("--note", action="append", default=[], help="a condition to record (repeatable)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO_DIR / "tests"))  # the cluster helper the tests use
    import ray
    from ray_cluster import LocalCluster

    info = machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="larsr-ray-bench-") as tmp:
        photos = make_photos(Path(tmp) / "in", args.images, args.size)
        log(f"starting a two-node Ray {ray.__version__} cluster")
        with LocalCluster(cpus_per_node=1) as cluster:
            for workers in (int(w) for w in args.workers.split(",")):
                log(f"{workers} worker(s): {args.images} images")
                model = str(REPO_DIR / args.model) if (REPO_DIR / args.model).is_dir() else args.model
                row = run_once(cluster, photos, Path(tmp) / f"out{workers}", model, workers, args.tile)
                log(f"  {row}")
                rows.append(row)
    data = {
        "kind": "ray_throughput",
        "command": command_line("benchmarks.ray_throughput", argv),
        "machine": info,
        "cpu_flags": cpu_flags(),
        "ray": ray.__version__,
        "settings": {"images": args.images, "size": args.size, "model": args.model, "tile": args.tile},
        "rows": rows,
        "scaling_efficiency": scaling(rows),
        "prediction": predict(rows, [int(n) for n in args.machines.split(",")]),
        "notes": [
            "both nodes run on the same 2 cores: the 2-worker row is a lower bound for 2 real machines",
            *args.note,
        ],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "ray_throughput.json", data)
    write_text(args.results / "ray_throughput.md", render_markdown(data))
    log(f"wrote {args.results / 'ray_throughput.md'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(run_main(main))
