"""onnxruntime sessions for a model folder: provider choice, threads, graph optimisation, memory.

On CPU the settings measured best on two cores are: intra-op threads = cores, one inter-op thread
(the graphs are chains) and full graph optimisation (its NCHWc layout transform is worth 15-40%).
Worker threads do not spin-wait after a run: the chain alternates four sessions with numpy work
(the draws, the cache writes) on the same cores, and a finished session's spinning threads took
those cores from whatever ran next (larsr-x4, 256 px, two cores: 3.87 s without spinning vs 4.19 s
with it, three alternating pairs; each graph alone is ~5% faster with spinning, which is why it is
on by default).

Memory (``ARENA_POLICIES``, process-wide). The default, ``per-graph``, opens sessions without
onnxruntime's CPU arena: each session kept its own arena at its peak, so the four graphs held the
sum of their peaks and fragmentation grew it from call to call (256 px input, small model: 1462 MB
peak RSS with arenas, 564 MB without, same speed within noise). The exception is a graph that runs
many times per tile (``arena_roles``: the LAR step, 16 runs whose attention buffers, tens of MB,
are freed and allocated again each run). Without an arena every run got fresh ``mmap`` s and
page-faulted them in: a tile-sized step ran 2.80 s per 16 steps without the arena, 2.17 s with it,
at a lower peak RSS (845 vs 873 MiB). Such a session keeps its arena, and the tile's last run
passes ``last_run_options()`` so that the arena hands its memory back before the next tile (its
outputs are bound to numpy buffers so that nothing of the arena outlives that run:
``arch.lar.step_runner``). What the other sessions malloc comes from glibc's heap, not a fresh
``mmap`` per tensor (``heap.serve_large_blocks_from_heap``), and the heap is trimmed above a mark
(``heap.release_freed_memory``) so that a long-lived process stays bounded.

``shared`` registers one arena with onnxruntime's environment for every session: the stages run
one after another, so it holds the largest stage's peak and keeps its chunks for the next stage and
tile instead of page-faulting them in again. It is measured, not the default (benchmarks.heap_policy
--arenas, results/heap_policy_arenas.md, 2-core EPYC, two alternating rounds): without trims it ran
a 1024 px input (--tile auto, 12 tiles) at 1.19-1.25 s per output Mpx against 1.31-1.32 for the
default, at a stable 1323 MiB peak, but a long-lived process that also met a 1000x1600 and a 700 px
image peaked at 1686 MiB, over the 1.5 GB bar the default keeps (1388-1400 MiB); with the trims it
was no faster than the default and peaked higher (1571-1613 MiB). Emptying the shared arena before
each large image (``Architecture.empty_shared_arena``) and trimming only there did not bound it
either: the 1000x1600 image alone grew it, 1699-1711 MiB (results/heap_policy_image_shrink.md,
where the default peaked at 1406-1478 MiB and the 1024 px input ran 1.04-1.15 s per output Mpx
against 1.01-1.04).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
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


#: How sessions get CPU memory: ``shared`` (one arena for all sessions of the process, kept from
#: stage to stage) or ``per-graph`` (none, except an arena per ``arena_roles`` graph that empties
#: itself on a tile's last run). The module docstring says why ``per-graph`` is the default.
ARENA_POLICIES = ("per-graph", "shared")
_arena_policy = "per-graph"


def set_arena_policy(policy: str) -> None:
    """Choose the arena policy for sessions opened from now on (process-wide):
    ``benchmarks.heap_policy --arenas`` compares them."""
    global _arena_policy
    if policy not in ARENA_POLICIES:
        raise ValueError(f"unknown arena policy {policy!r}; expected one of {ARENA_POLICIES}")
    _arena_policy = policy


def arena_policy() -> str:
    return _arena_policy


@cache
def _register_shared_cpu_arena() -> None:
    """One arena in onnxruntime's environment, which sessions with ``session.use_env_allocators``
    allocate from. Its regions grow by powers of two (strategy 0): the same-as-requested strategy
    fitted new shapes worse (the 4096 px output peaked at 1374-1447 MiB, not 1141-1190)."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # max_mem 0: no cap; strategy 0: next power of two; -1: onnxruntime's default chunk settings
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))


def last_run_options() -> ort.RunOptions | None:
    """Run options for a graph's last run in a tile: under ``per-graph`` they empty the session's
    own arena before the next stage needs the memory; under ``shared`` none (the next stage reuses
    what the arena holds)."""
    if _arena_policy == "shared":
        return None
    return shrink_options()


def shrink_options() -> ort.RunOptions:
    """Run options that empty the CPU arena the session allocates from when the run ends: its own
    under ``per-graph``, the process's one under ``shared`` (onnxruntime shrinks an arena only at
    the end of a run). A device's own arena is not named: onnxruntime refuses the run when a named
    one does not exist."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def resolve_threads(threads: int | None) -> int:
    """``--threads``: None means every core; onnxruntime and the sampler's draws both use it."""
    return int(threads) if threads else (os.cpu_count() or 1)


def session_options(threads: int | None, arena: bool = False) -> ort.SessionOptions:
    """``arena``: whether this graph gets its own arena under the ``per-graph`` policy (under
    ``shared`` every session uses the process's one)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = resolve_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if _arena_policy == "shared":
        _register_shared_cpu_arena()
        opts.enable_cpu_mem_arena = True
        opts.add_session_config_entry("session.use_env_allocators", "1")
    else:
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
