"""Registry of model families: manifest ``architecture`` id -> ``Architecture`` class.

Modelled on spandrel's architecture registry: the manifest says which family built the graphs,
the runtime looks it up here, and an unknown id is a one-line error instead of a crash deep in a
pipeline written for another family.
"""

from __future__ import annotations

from ..errors import ModelError
from .base import Architecture, ArchSpec
from .lar import LarSpec, LarSR

ARCHITECTURES: dict[str, type[Architecture]] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator / call: make ``cls`` loadable by its ``id``."""
    if cls.id in ARCHITECTURES and ARCHITECTURES[cls.id] is not cls:
        raise ValueError(f"architecture id {cls.id!r} is already registered")
    ARCHITECTURES[cls.id] = cls
    return cls


def get_architecture(arch_id: object, where: str = "manifest") -> type[Architecture]:
    try:
        return ARCHITECTURES[arch_id]  # type: ignore[index]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelError(
            f"{where}: unknown architecture {arch_id!r} (this larsr knows {known}); "
            "upgrade larsr or use a model made for it"
        ) from None


register(LarSR)

__all__ = ["ARCHITECTURES", "ArchSpec", "Architecture", "LarSR", "LarSpec", "get_architecture", "register"]
