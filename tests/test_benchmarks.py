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


def test_flops_count_the_step_graph_once_per_step(tiny_model_dir, tmp_path) -> None:
    """A LAR drawing two codes per step runs its step graph 8 times instead of 16: benchmarks.flops
    must count it so (the same networks otherwise, so the other graphs cost the same)."""
    from benchmarks.flops import count
    from export.configs import get_config
    from export.model import LarsrModel
    from export.to_onnx import export_model

    pairs_dir = tmp_path / "pairs"
    export_model(LarsrModel(get_config("tiny").with_overrides(lar_codes_per_step=2)), pairs_dir, "pairs")
    single, pairs = count(tiny_model_dir, 32), count(pairs_dir, 32)
    for role in ("coarse", "condition", "decoder"):
        assert pairs["graphs"][role] == single["graphs"][role]
    # Half the steps; each step's head predicts two codes, so a little more than half.
    step_single, step_pairs = single["graphs"]["lar_step"], pairs["graphs"]["lar_step"]
    assert 0.5 * step_single < step_pairs < 0.75 * step_single
    assert pairs["flops_per_output_pixel"] == sum(pairs["graphs"].values())
