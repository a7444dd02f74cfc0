"""Pieces shared by the quality and speed benchmarks: machine facts, model and photo loading, the
peers' subprocess protocol, and small output helpers.

Kept free of torch so that ``benchmarks.speed`` and ``benchmarks.report`` run in the plain runtime
environment; only the LPIPS part of ``benchmarks.quality`` needs torch.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from export.degrade import to_uint8
from larsr_cli.atomic import atomic_write

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_RESULTS = BENCH_DIR / "results"


class BenchError(Exception):
    """A problem the person running the benchmark can fix; printed as one line, no traceback."""


# --------------------------------------------------------------------------------------------
# Entry points


def run_main(fn: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a benchmark's main, turning expected failures into one ``error:`` line and exit code 2.

    A missing model or photo folder is the common mistake; a traceback for it would bury the fix.
    """
    from larsr_cli.errors import LarsrError

    try:
        return fn(argv)
    except (BenchError, LarsrError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up (allocation and kernel selection are
    not the work being measured)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The exact command as typed, so RESULTS.md can say how every number was produced."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


# --------------------------------------------------------------------------------------------
# Machine facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The CPU features that decide which precisions can be fast here (recorded with every result).
SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


def cpu_flags() -> set[str]:
    """The kernel's CPU feature flags (``lscpu`` reads the same line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge the numbers: CPU, cores usable, RAM, load, library versions.

    The load average is recorded because the benchmark box is shared (e.g. with a training run):
    absolute seconds drift with it, ratios measured in the same run much less.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_flags": sorted(set(SPEED_FLAGS) & cpu_flags()) or None,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": _ram_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime"),
        "numpy": np.__version__,
        "opencv": _version("cv2"),
        "pillow": Image.__version__ if hasattr(Image, "__version__") else _version("PIL"),
    }


# --------------------------------------------------------------------------------------------
# Model and photos


def open_upscaler(folder: str | Path, threads: int | None = None, precision: str = "auto") -> Any:
    """The larsr ``Upscaler`` on CPU, with a clear message when the folder is not there yet;
    ``precision`` auto is what a user of this machine gets."""
    from larsr_cli.pipeline import Upscaler

    path = Path(folder)
    if not path.is_dir():
        raise BenchError(
            f"model folder not found: {path} (train and export one, or for a dry run: "
            "python -m export.to_onnx --config small --out /tmp/bench_model)"
        )
    return Upscaler(path, device="cpu", threads=threads, precision=precision)


def model_info(upscaler: Any) -> dict[str, Any]:
    """The manifest facts that identify which model produced the numbers."""
    m = upscaler.manifest
    return {
        "folder": str(upscaler.folder),
        "name": m.name,
        "scale": m.scale,
        "default_temperature": m.default_temperature,
        "default_texture": m.default_texture,
        "precision": upscaler.precision,
        "architecture": m.architecture,
        "codebook_size": getattr(m.spec, "codebook_size", None),
        "config": m.config.get("name"),
        "training_data": m.training_data,
        "onnx_sha256": {k: str(v.get("sha256", ""))[:16] for k, v in m.files.items()},
    }


def check_photos(photos: str | Path) -> Path:
    """Fail early, in one line, when the photo set has not been fetched."""
    path = Path(photos)
    if not (path / "manifest.json").is_file():
        raise BenchError(f"no photo set at {path} (fetch it with: python -m export.data fetch data)")
    return path


# --------------------------------------------------------------------------------------------
# Images


def save_png(img: np.ndarray, path: Path) -> None:
    arr = img if img.dtype == np.uint8 else to_uint8(img)
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def load_png(path: Path) -> np.ndarray:
    """An RGB PNG as float32 HxWx3 in [0,1]."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# Peers


@dataclass(frozen=True)
class Peer:
    """A peer upscaler living in its own venv and driven through a runner script."""

    key: str
    label: str
    venv: Path
    runner: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def missing(self) -> str | None:
        """Why the peer cannot run here, or None; a missing peer is skipped, never fatal."""
        if not self.python.is_file():
            return f"{self.label} not installed ({self.venv} missing: run bash benchmarks/setup_peers.sh)"
        if not self.runner.is_file():
            return f"{self.label}: runner {self.runner} missing"
        return None


PEERS: tuple[Peer, ...] = (
    Peer(
        "realesrgan",
        "Real-ESRGAN x4plus",
        BENCH_DIR / ".venv-peers",
        BENCH_DIR / "peers" / "realesrgan_runner.py",
    ),
    Peer("dat", "DAT-light x4", BENCH_DIR / ".venv-dat", BENCH_DIR / "peers" / "dat_runner.py"),
)


def select_peers(names: Sequence[str]) -> list[Peer]:
    """``names`` from --peers; 'all' means every known peer, 'none' none."""
    if not names or "all" in names:
        return list(PEERS)
    if "none" in names:
        return []
    known = {p.key: p for p in PEERS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"unknown peer {unknown[0]!r}; choose from {', '.join(known)}, all, none")
    return [known[n] for n in names]


def installed_peers(peers: Sequence[Peer], notes: list[str]) -> Iterator[Peer]:
    """The peers that can run; a missing one becomes a note in the results, not a failed run."""
    for peer in peers:
        reason = peer.missing()
        if reason:
            notes.append(f"skipped {reason}")
            log(f"  {reason}: skipped")
            continue
        yield peer


def run_peer(
    peer: Peer, in_dir: Path, out_dir: Path, repeats: int = 1, threads: int | None = None
) -> dict[str, Any]:
    """Run a peer's runner over a folder of PNGs; returns its JSON report.

    The runner times each image itself (model loaded and warmed up first), so process start and
    weight loading are reported apart (``load_s``) instead of polluting per-image seconds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(peer.python), str(peer.runner), str(in_dir), str(out_dir), "--repeats", str(repeats)]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    report = last_json_line(proc.stdout)
    if proc.returncode != 0 or report is None:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{peer.label} runner failed (exit {proc.returncode}): {tail}")
    report["process_wall_s"] = round(wall, 3)
    return report


def last_json_line(stdout: str) -> dict[str, Any] | None:
    """The runner's report is its last stdout line; native libraries may print before it."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                return None
    return None


def child_report(module: str, args: Sequence[str], what: str) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh process and return its report (``last_json_line``):
    the benchmarks whose subject is the heap's history run each policy this way. A failed child
    is one ``BenchError`` line naming ``what`` ran."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)
    report = last_json_line(done.stdout) if done.returncode == 0 else None
    if report is None:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise BenchError(f"the {what} run failed: {lines[-1]}")
    return report


# --------------------------------------------------------------------------------------------
# Output


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write: a crashed run never leaves half a results file for report.py to choke on."""
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_write(path, overwrite=True) as fh:
        fh.write(text.encode("utf-8"))


def log(msg: str) -> None:
    """Progress on stderr, so stdout stays clean for anything piped."""
    print(msg, file=sys.stderr, flush=True)
