"""How sessions get memory is a speed and peak-RSS choice only: it must never change a pixel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from larsr_cli.pipeline import Upscaler
from larsr_cli.sessions import ARENA_POLICIES, arena_policy, last_run_options, set_arena_policy


@pytest.fixture()
def restore_arena_policy() -> Iterator[None]:
    before = arena_policy()
    yield
    set_arena_policy(before)


def _tiled_and_whole(folder: Path, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    upscaler = Upscaler(folder, device="cpu", threads=1)
    tiled = upscaler.upscale_array(lr, seed=3, temperature=0.7, tile=24, out_dtype=np.float32)
    whole = upscaler.upscale_array(lr, seed=3, temperature=0.7, tile=0, out_dtype=np.float32)
    return tiled, whole


def test_both_arena_policies_give_the_same_pixels_tiled_and_whole(
    tiny_model_dir: Path, restore_arena_policy: None
) -> None:
    rng = np.random.default_rng(0)
    lr = rng.random((40, 52, 3), dtype=np.float32)
    results = {}
    for policy in ARENA_POLICIES:
        set_arena_policy(policy)
        results[policy] = _tiled_and_whole(tiny_model_dir, lr)
    shared_tiled, shared_whole = results["shared"]
    own_tiled, own_whole = results["per-graph"]
    assert np.array_equal(shared_tiled, shared_whole)  # tiles stay seamless with the shared arena
    assert np.array_equal(shared_tiled, own_tiled)
    assert np.array_equal(shared_whole, own_whole)
    assert np.abs(shared_whole - np.repeat(np.repeat(lr, 4, 0), 4, 1)).max() > 0.01  # real work ran


def test_only_per_graph_arenas_are_emptied_after_a_tile(restore_arena_policy: None) -> None:
    """Under ``shared`` the next stage reuses what the arena holds, so nothing asks it to shrink."""
    set_arena_policy("shared")
    assert last_run_options() is None
    set_arena_policy("per-graph")
    assert last_run_options() is not None


def test_an_unknown_arena_policy_is_refused(restore_arena_policy: None) -> None:
    with pytest.raises(ValueError, match="unknown arena policy 'huge'"):
        set_arena_policy("huge")
    assert arena_policy() in ARENA_POLICIES
