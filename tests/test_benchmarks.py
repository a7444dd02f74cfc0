"""The benchmark harnesses run end to end on the tiny model (their numbers are recorded in
benchmarks/results by hand, on the real model; here only that each measures what it says)."""

from __future__ import annotations


def test_lar_step_benchmark_times_both_graphs_on_the_models_cache_layout() -> None:
    """benchmarks.lar_step feeds the step graph a cache in the model's own layout (a half-filled
    prefix): a layout change that the harness does not follow fails here, not on the next run."""
    from benchmarks.lar_step import measure

    result = measure(None, "tiny", 16, 1, 1)
    assert result["config"] == "tiny" and result["lr_size"] == 16
    assert result["cached_step_s"] > 0 and result["full_recompute_s"] > 0
    assert result["speedup"] == result["full_recompute_s"] / result["cached_step_s"]
