"""Which precision a run uses (``--precision auto|fp32|int8``) and which graph file each role loads.

Why ``auto`` is not simply "int8 when the model has it": static QDQ int8 graphs are only faster
where the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX). Without them
onnxruntime's int8 kernels fall back to widening multiplies and the quantise/dequantise nodes
around every convolution cost more than they save, so such a CPU, and any GPU, stays on fp32.
Outside Linux the flags are not read (no /proc/cpuinfo): fp32 there too, never a guess.

Explicit ``int8`` is honoured on any device; on a model without int8 graphs it is refused with
one line rather than silently running fp32, so a benchmark never measures the wrong thing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from .errors import LarsrError
from .manifest import BASE_PRECISION, GraphFile, Manifest

PRECISIONS = ("auto", "fp32", "int8")
INT8 = "int8"
#: /proc/cpuinfo flags of int8 dot-product units (any one is enough).
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPUINFO = Path("/proc/cpuinfo")

CpuFlags = Callable[[], Iterable[str]]


@lru_cache(maxsize=1)
def read_cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo on Linux; empty anywhere else or if unreadable."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        text = CPUINFO.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def has_int8_dot(flags: Iterable[str]) -> bool:
    return not INT8_DOT_FLAGS.isdisjoint(flags)


def resolve_precision(
    requested: str, manifest: Manifest, device_label: str, cpu_flags: CpuFlags | None = None
) -> str:
    """``auto``, ``fp32`` or ``int8`` -> the precision this run uses (``fp32`` or ``int8``).

    ``cpu_flags`` replaces the /proc/cpuinfo reader (tests, or a caller that knows better).
    """
    choice = (requested or "auto").strip().lower()
    if choice not in PRECISIONS:
        raise LarsrError(f"--precision {requested!r}: expected {', '.join(PRECISIONS)}")
    ships_int8 = bool(manifest.precisions.get(INT8))
    if choice == BASE_PRECISION:
        return BASE_PRECISION
    if choice == INT8:
        if not ships_int8:
            raise LarsrError(f"model {manifest.name} ships no int8 graphs; use --precision fp32 (or auto)")
        return INT8
    if not ships_int8 or device_label != "cpu":
        return BASE_PRECISION
    flags = (cpu_flags or read_cpu_flags)()
    return INT8 if has_int8_dot(flags) else BASE_PRECISION


def graph_files(manifest: Manifest, precision: str) -> dict[str, GraphFile]:
    """The file each graph role loads: the variant where the model ships one, else fp32."""
    variant = manifest.precisions.get(precision, {}) if precision != BASE_PRECISION else {}
    return {role: variant.get(role, graph) for role, graph in manifest.graphs.items()}
