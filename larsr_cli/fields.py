"""Typed reads of untrusted JSON fields (manifests): each bad value is one line naming its key.

"four", 1e400, true, nan or a 100000-deep object must never reach the pipeline as a traceback;
the manifest and every architecture spec read their fields through these.
"""

from __future__ import annotations

from typing import Any

from .errors import ModelError


def read_int(
    data: dict, key: str, lo: int, hi: int, where: str, prefix: str = "", default: Any = None
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ModelError(
            f"{where}: manifest {prefix}{key} must be an integer from {lo} to {hi}, got {value!r}"
        )
    return int(value)


def read_number(
    data: dict, key: str, lo: float, hi: float, where: str, prefix: str = "", default: float | None = None
) -> float:
    value = data.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= float(value) <= hi
    if not ok or value is None:  # also refuses nan, which fails every comparison
        raise ModelError(
            f"{where}: manifest {prefix}{key} must be a number from {lo:g} to {hi:g}, got {value!r}"
        )
    return float(value)


def read_text(data: dict, key: str, where: str, prefix: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"{where}: manifest {prefix}{key} must be a non-empty string, got {value!r}")
    return value


def read_object(data: dict, key: str, where: str, required: bool = False) -> dict:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ModelError(f"{where}: manifest {key} must be an object")
    return value
