"""What every model family provides to the shared ``Upscaler``.

``Upscaler`` owns what all architectures share: padding to the tile multiple, planning tiles from
the receptive fields, alpha, quantising and ``--scale``. An architecture owns its graphs and its
per-tile maths. Adding a family is one module here with a spec dataclass and an ``Architecture``
subclass, registered in ``larsr_cli.arch``; the manifest names it in ``architecture``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from ..heap import release_freed_memory
from ..sampler import Sampler
from ..tiling import Box

# (step done inside the tile, steps per tile): the architecture's own progress.
TileStepHook = Callable[[int, int], None]


@dataclass(frozen=True)
class ArchSpec:
    """The typed, architecture-specific part of a manifest (its ``spec`` object).

    The two defaults live on every spec so the CLI and the API can ask any model for them; a
    model without sampled texture keeps them at 0.
    """

    default_temperature: float = 0.0
    default_texture: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Architecture(ABC):
    """One model family: its graph roles, its spec and how it turns an LR tile into an HR tile."""

    id: ClassVar[str]
    #: Graph roles the manifest must map to files; the sessions dict is keyed by them.
    graph_roles: ClassVar[tuple[str, ...]]
    #: ``receptive_field`` entries (LR px) whose radii chain up into the tiling margin.
    stages: ClassVar[tuple[str, ...]]
    #: The leading stages that make the structure image, an HR picture the other stages read
    #: (``render_on_structure``); empty when the family cannot be split, which keeps it on
    #: one-pass tiles (``larsr_cli.twopass`` explains the gain).
    structure_stages: ClassVar[tuple[str, ...]] = ()
    #: Graph roles run many times per tile on buffers of repeating sizes: under the ``per-graph``
    #: arena policy their sessions keep an arena of their own (``sessions.py`` says why the others
    #: do not), which the family empties on a tile's last run (``sessions.last_run_options``).
    arena_roles: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        spec: ArchSpec,
        scale: int,
        sessions: dict[str, Any],
        *,
        margin_of: Callable[[tuple[str, ...]], int] | None = None,
    ) -> None:
        self.spec = spec
        self.scale = scale
        # The manifest's ``margin_of`` (summed radii of a chain of stages, on the tile multiple):
        # with it a tile's later stages run on windows that shrink towards the pixels kept
        # (``stage_window``); without, every stage runs on the whole context.
        self.margin_of = margin_of
        # The caller's dict, read on every call: a profiler may swap an entry for a timing proxy.
        self.sessions = sessions
        # Whether the family hands freed heap pages back between its stages inside a tile
        # (``heap.release_freed_memory``): the pipeline decides per image, because the trim bounds
        # the peak of a large tile but makes the next stage fault its pages in again.
        self.release_between_stages = True
        self.check_sessions(sessions)

    def check_sessions(self, sessions: dict[str, Any]) -> None:
        """Refuse graphs this family cannot run (one ``ModelError`` line) when the model opens,
        not at its first tile; a family whose graphs need no check keeps this one."""
        return None

    def stage_window(self, stages: tuple[str, ...], keep: Box | None, context: Box) -> Box:
        """The LR window the chain ``stages`` must run on so that ``keep`` comes out exact: ``keep``
        grown by their summed radii (``Manifest.margin_of``: on the tile multiple, so code patches
        stay on the global grid), within ``context``. The whole context when nothing is kept or no
        margins were given.

        Why: a tile's context carries the margin of every texture stage, but each stage needs
        only the margin of the stages after it. The LAR steps on ``keep`` + 26 px and the decoder
        on ``keep`` + 10 px instead of ``keep`` + 38 px compute 12-15% fewer pixels each in a
        392 px tile, and the LAR stage, which sets the tile's memory peak, holds less.
        """
        if keep is None or self.margin_of is None:
            return context
        return keep.grown(self.margin_of(stages), context)

    def empty_shared_arena(self) -> None:
        """Before a large image under the ``shared`` arena policy (``sessions.py``): hand what the
        arena keeps from earlier images back to the heap, which the image trim then returns, so
        that chunks cut for other shapes do not add to this image's peak. A family without a
        cheap run to do it on keeps this no-op."""
        return None

    def release_stage_memory(self) -> None:
        """Between two stages of one tile: free heap pages go back when the pipeline asks."""
        if self.release_between_stages:
            release_freed_memory("stage")

    @classmethod
    @abstractmethod
    def parse_spec(cls, data: Any, where: str, names: Mapping[str, str] | None = None) -> ArchSpec:
        """Validate the manifest's ``spec``; every problem is one ``ModelError`` line. ``names``
        maps a field to the prefix the user's file gives it, when that is not ``spec.`` (an older
        manifest format that kept fields elsewhere)."""

    @abstractmethod
    def structure(self, lr: np.ndarray) -> np.ndarray:
        """The regression result alone, (1,3,H,W) float -> (1,3,sH,sW): what ``--texture 0`` gives."""

    @abstractmethod
    def steps(self, texture: float) -> int:
        """Progress units per tile, so a one-tile image still shows a moving bar."""

    @abstractmethod
    def render_tile(
        self,
        lr: np.ndarray,
        context: Box,
        sampler: Sampler,
        texture: float,
        on_step: TileStepHook | None = None,
    ) -> np.ndarray:
        """One tile with its context, (1,3,h,w) -> (1,3,sh,sw) float; ``context`` is its LR window."""

    def render_on_structure(
        self,
        xc: np.ndarray,
        context: Box,
        sampler: Sampler,
        texture: float,
        on_step: TileStepHook | None = None,
        keep: Box | None = None,
    ) -> np.ndarray:
        """The stages after ``structure_stages`` on a tile's exact structure image (1,3,sh,sw) of
        ``context``; the result covers ``keep`` (a box inside ``context``, default all of it)."""
        raise NotImplementedError(f"{self.id} has no structure stages")

    @abstractmethod
    def bytes_per_lr_pixel(self) -> int:
        """Working memory per LR pixel of a tile's context, for choosing and checking tile sizes."""

    def structure_bytes_per_lr_pixel(self) -> int:
        """The same for the structure stages alone (two-pass strips); one-pass figure by default."""
        return self.bytes_per_lr_pixel()

    def texture_bytes_per_lr_pixel(self) -> int:
        """The same for ``render_on_structure`` (its input image included)."""
        return self.bytes_per_lr_pixel()
