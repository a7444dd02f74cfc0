"""onnxruntime sessions for a model folder: provider choice, threads, graph optimisation.

On CPU the settings measured best on two cores are: intra-op threads = cores, one inter-op thread
(the graphs are chains) and full graph optimisation (its NCHWc layout transform is worth 15-40%).
The CPU memory arena is off: each session kept its own arena at its peak, so the four graphs held
the sum of their peaks and fragmentation grew it from call to call (256x256 input, small model:
1462 MB peak RSS with arenas, 564 MB without, same speed within noise). Worker threads do not
spin-wait after a run: the chain alternates four sessions with numpy work (the draws, the cache
writes) on the same cores, and a finished session's spinning threads took those cores from
whatever ran next (larsr-x4, 256 px, two cores: 3.87 s without spinning vs 4.19 s with it, three
alternating pairs; each graph alone is ~5% faster with spinning, which is why it is on by default).

The exception is a graph that runs many times per tile (the LAR step: 16 runs whose attention
buffers, tens of MB, are freed and allocated again each run). Without an arena every run gets
fresh ``mmap`` s from glibc and page-faults them in: a tile-sized step (28900 patches) ran 2.80 s
per 16 steps without the arena, 2.17 s with it, at a lower peak RSS (845 vs 873 MiB); raising
glibc's mmap threshold instead was as fast but kept the growing buffers of successive steps in
the heap (1458 MiB peak for a 4096 px output). Such a session keeps its arena, and the tile's last
run passes ``shrink_arena_options()`` so that the arena hands its memory back before the next tile
(its outputs are bound to numpy buffers so that nothing of the arena outlives that run:
``arch.lar.step_runner``).

Arena or not, what a session mallocs comes from glibc's heap, not a fresh ``mmap`` per tensor
(``heap.serve_large_blocks_from_heap``): the page faults of those mmaps were a third of the
coarse graph's time. That is the cheap half of what an arena gives, without one arena per graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from .errors import LarsrError, ModelError, one_line


@dataclass(frozen=True)
class DeviceChoice:
    providers: list
    label: str


def parse_device(device: str) -> DeviceChoice:
    """``auto`` picks CUDA when onnxruntime-gpu sees a GPU, else CPU; ``cuda[:i]`` insists on it."""
    available = ort.get_available_providers()
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return DeviceChoice(["CPUExecutionProvider"], "cpu")
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return DeviceChoice(
                [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], "cuda:0"
            )
        return DeviceChoice(["CPUExecutionProvider"], "cpu")
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        if index and not index.isdigit():
            raise LarsrError(f"--device {device!r}: expected cuda or cuda:N")
        if "CUDAExecutionProvider" not in available:
            raise LarsrError(
                f"--device {device}: this onnxruntime has no CUDA provider "
                "(pip install 'larsr[gpu]' && pip uninstall -y onnxruntime: the CPU wheel shadows the "
                "GPU one; a CUDA runtime is needed too)"
            )
        dev_id = int(index or 0)
        return DeviceChoice(
            [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"], f"cuda:{dev_id}"
        )
    raise LarsrError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")


def shrink_arena_options() -> ort.RunOptions:
    """Run options that empty the session's CPU arena when the run ends (a device's own arena is
    not named: onnxruntime refuses the run when a named one does not exist)."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def resolve_threads(threads: int | None) -> int:
    """``--threads``: None means every core; onnxruntime and the sampler's draws both use it."""
    return int(threads) if threads else (os.cpu_count() or 1)


def session_options(threads: int | None, arena: bool = False) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = resolve_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = arena
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # warnings about unused initialisers are noise for users
    return opts


def open_session(
    path: Path, device: DeviceChoice, threads: int | None, arena: bool = False
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(threads, arena), providers=device.providers
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: cannot load ONNX graph ({one_line(exc)})") from None
