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


def test_rss_probe_reports_the_kernel_time_and_faults_of_its_child() -> None:
    """The memory table's kernel seconds come from the probe: a child that faults in 64 MiB shows
    a peak RSS above it and at least one minor fault per 2 MiB (numpy asks for huge pages)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    probe = Path(__file__).resolve().parents[1] / "benchmarks" / "rss_probe.py"
    child = "import numpy as np; a = np.empty(64 << 20, np.uint8); a[::4096] = 1"
    out = subprocess.run(
        [sys.executable, str(probe), sys.executable, "-c", child], capture_output=True, text=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0
    assert report["minor_faults"] >= 64 // 2
    assert report["maxrss_kib"] >= 64 << 10 and report["sys_s"] >= 0 and report["user_s"] > 0


def test_refault_measures_three_rates_per_page_kind_and_writes_them(tmp_path) -> None:
    import json

    from benchmarks.refault import main
    from larsr_cli.heap import set_numpy_huge_pages

    own = set_numpy_huge_pages(False)  # as an Upscaler in this process would have left it
    try:
        assert main(["--mib", "16", "--pause", "0", "--out", str(tmp_path)]) == 0
        assert set_numpy_huge_pages(False) is False  # the benchmark put the process's setting back
    finally:
        if own is not None:
            set_numpy_huge_pages(own)
    data = json.loads((tmp_path / "refault.json").read_text())
    assert data["mib"] == 16 and set(data["gb_per_s"]) == {"small_pages", "huge_pages"}
    for rates in data["gb_per_s"].values():
        assert set(rates) == {"first_touch", "right_after_free", "after_pause"}
        assert all(rate > 0 for rate in rates.values())


def test_the_peak_is_the_best_of_each_kernel_over_its_measurements() -> None:
    """A peak measured in a busy moment would put larsr's own kernels above 100% of it."""
    from benchmarks.peak import best_peaks

    before = {"threads": 2, "gflops": {"fp32_conv": 105.0, "fp32_gemm": 179.0}, "fp32_peak_gflops": 179.0}
    after = {"threads": 2, "gflops": {"fp32_conv": 198.0, "fp32_gemm": 84.0}, "fp32_peak_gflops": 198.0}
    best = best_peaks([before, after])
    assert best["gflops"] == {"fp32_conv": 198.0, "fp32_gemm": 179.0}
    assert best["fp32_peak_gflops"] == 198.0 and best["measurements"] == 2
    assert before["gflops"]["fp32_conv"] == 105.0  # the measurements themselves are kept as they were


def test_heap_trace_notes_every_graph_run_of_a_tiled_image(tiny_model_dir) -> None:
    """benchmarks.heap_trace shows the heap after each run, tile by tile: every graph role of a
    tiled image appears, once per tile for the texture graphs (a tile's LAR steps shown once),
    and the heap in use never exceeds the heap. The sessions are the upscaler's own afterwards."""
    import numpy as np

    from benchmarks.heap_trace import markdown, trace_image
    from larsr_cli.pipeline import Upscaler

    upscaler = Upscaler(tiny_model_dir, threads=1, memory_budget=2_000_000)
    lr = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
    tiles = len(upscaler.plan(96, 96, "auto"))
    assert tiles > 1
    sessions = dict(upscaler.sessions)
    rows = trace_image(upscaler, lr)
    assert upscaler.sessions == sessions
    runs = [r["run"] for r in rows]
    assert {"coarse", "condition", "lar_step", "decoder"} <= set(runs)
    assert runs.count("condition") == runs.count("lar_step") == runs.count("decoder") == tiles
    assert all(0 < r["in_use_mib"] <= r["heap_mib"] and r["rss_mib"] > 0 for r in rows)
    result = {
        "size": 96,
        "date": "2026-12-03",
        "command": "python -m benchmarks.heap_trace",
        "machine": {},
        "policies": [
            {"trims": True, "tiles": tiles, "rows": rows},
            {"trims": False, "tiles": tiles, "rows": rows[:2]},
        ],
    }
    table = [line for line in markdown(result).splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == len(rows)


def test_heap_policy_keeps_the_mixed_images_apart_from_the_tiling_ratio() -> None:
    """--mixed adds the images a long-lived process meets after the square runs: the tiling ratio
    must still come from the square 256 and 1024 px runs, and the peak after the mixed images is
    reported on its own (it is the long-lived process's figure, not the fresh one's)."""
    import numpy as np

    from benchmarks.heap_policy import crop, summary

    def run(phase: str, size: object, s_per_mpx: float, kernel: float, peak: int) -> dict[str, object]:
        return {
            "phase": phase,
            "input": size,
            "tiles": 9,
            "seconds": s_per_mpx,
            "s_per_mpx": s_per_mpx,
            "kernel_s": kernel,
            "peak_rss_mib": peak,
        }

    runs = [run("square", 256, 1.0, 0.1, 500), run("square", 1024, 2.0, 9.0, 1200)]
    runs += [run("square", 1024, 1.5, 8.0, 1250)]
    runs += [run("mixed", "1000x1600", 2.5, 7.0, 1400), run("mixed", 1024, 1.8, 6.0, 1550)]
    s = summary({"runs": runs})
    assert s["ratio"] == 1.5 and s["kernel_s"] == [9.0, 8.0] and s["peak_rss_mib"] == 1250
    assert s["mixed"] == {"1000x1600": 2.5, "1024": 1.8} and s["peak_rss_mixed_mib"] == 1550
    unmarked = [{k: v for k, v in r.items() if k != "phase"} for r in runs[:3]]
    old = summary({"runs": unmarked})  # results recorded before --mixed carry no phase
    assert "mixed" not in old and old["ratio"] == 1.5

    photo = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    assert crop(photo, 1000, 1600).shape == (1000, 1600, 3)
    assert crop(photo, 1200, 700).shape == (1200, 700, 3)


def test_graph_speed_replays_the_roles_real_feeds_and_says_which_file_differs(
    tiny_model_dir, int8_model_dir
) -> None:
    """benchmarks.graph_speed times a step graph on every step of an image (its cache included)
    and compares each file's outputs with the first one: a copy is identical, int8 is not."""
    import shutil
    import tempfile
    from pathlib import Path

    import pytest

    from benchmarks.common import BenchError
    from benchmarks.graph_speed import time_graphs
    from larsr_cli.pipeline import Upscaler

    steps = Upscaler(tiny_model_dir, device="cpu").arch.spec.tokens  # one tile: a run per step
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = tiny_model_dir / "lar_step.onnx"
        copy = Path(tmp) / "lar_step.onnx"
        shutil.copy(fp32, copy)
        rows = time_graphs(
            [fp32, copy, int8_model_dir / "lar_step.int8.onnx"], "lar_step", tiny_model_dir, [16], 1, 1
        )
    assert [r["runs"] for r in rows] == [steps] * 3
    assert all(r["seconds"] > 0 for r in rows)
    assert "identical" not in rows[0]
    assert rows[1]["identical"] and rows[1]["max_abs_diff"] == 0
    assert not rows[2]["identical"] and rows[2]["max_abs_diff"] > 0
    # Another role's file is one error line (run_main), not an onnxruntime traceback.
    with pytest.raises(BenchError, match="coarse.onnx: inputs lr are not those of"):
        time_graphs([tiny_model_dir / "coarse.onnx"], "lar_step", tiny_model_dir, [16], 1, 1)


def test_results_name_the_cpu_of_a_run_from_another_machine() -> None:
    """RESULTS.md heads its machine table with one CPU; a speed run re-recorded on another CPU
    must say so in its row, or its seconds read as the first machine's."""
    from benchmarks.report import machine_markdown

    amd = {"cpu_model": "AMD EPYC", "date": "2026-12-02", "load_average": [1.0]}
    xeon = {"cpu_model": "Intel(R) Xeon(R) Processor", "date": "2026-12-03", "load_average": [1.5]}
    text = machine_markdown(amd, {"quality": {"machine": amd}, "speed": {"machine": xeon}})
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "on Intel(R) Xeon(R) Processor" in rows["speed run"]
    assert " on " not in rows["quality run"]


def test_speed_warms_larsr_up_until_its_heap_stops_growing() -> None:
    """The speed table claims steady state: warm-up runs continue while a run faults clearly fewer
    pages than the one before, and stop once it faults almost none, or as many as before (a tiled
    image trims its heap between tiles on purpose and faults the same every run)."""
    from benchmarks.speed import PAGE_BYTES, SETTLED_FAULT_BYTES, still_settling

    many = 100 * SETTLED_FAULT_BYTES // PAGE_BYTES
    assert still_settling(None, many)  # the first run faulted: try another
    assert still_settling(many, many // 2)  # still dropping
    assert not still_settling(many, many)  # steady faulting: waiting would not help
    assert not still_settling(many, SETTLED_FAULT_BYTES // PAGE_BYTES - 1)  # settled
    assert not still_settling(None, 0)


def test_speed_times_the_first_run_apart_from_the_settled_repeats(tiny_model_dir) -> None:
    """time_larsr reports the first run at a size (what a one-image CLI call pays) on its own,
    the warm-up runs and their faults, and then exactly the asked-for repeats."""
    import numpy as np

    from benchmarks.speed import time_larsr
    from larsr_cli.pipeline import Upscaler

    upscaler = Upscaler(tiny_model_dir, threads=1)
    lr = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    result = time_larsr(upscaler, lr, 0.6, "auto", 2, max_settle=3)
    assert len(result["seconds"]) == 2 and len(result["fault_mib"]) == 2
    assert result["first_s"] > 0
    assert 0 <= result["settle_runs"] <= 3
    assert len(result["warmup_fault_mib"]) == result["settle_runs"] + 1
    plain = time_larsr(upscaler, lr, 0.6, "auto", 1)
    assert "first_s" not in plain and len(plain["seconds"]) == 1


def test_cuda_check_records_a_machine_without_cuda_and_compares_devices_where_it_runs(
    tiny_model_dir, tmp_path
) -> None:
    """The prepared GPU script must tell a machine without the CUDA provider apart (recorded,
    exit 0, nothing run) and, on a device it can use, compare that device's pixels with the CPU's:
    the CPU against itself must come out identical (a broken comparison would not)."""
    import json

    import onnxruntime as ort

    from benchmarks.cuda_check import main

    args = ["--device", "cpu", "--sizes", "16,24", "--model", str(tiny_model_dir), "--out", str(tmp_path)]
    assert main(args) == 0
    result = json.loads((tmp_path / "cuda_check.json").read_text())
    assert result["coarse_max_abs_diff"] == 0.0
    assert result["full_chain_pixels_differing_over_2_of_255"] == 0.0
    assert [r["input"] for r in result["rates"]] == [16, 24] and result["rates"][0]["cpu_s_per_mpx"] > 0
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert main(["--out", str(tmp_path), "--name", "no_gpu"]) == 0
        no_gpu = json.loads((tmp_path / "no_gpu.json").read_text())
        assert no_gpu["cuda"] is False and "rates" not in no_gpu


def test_row_stream_benchmark_compares_the_stream_with_the_strips_it_would_replace(
    tiny_model_dir, tiny_torch_model
) -> None:
    """benchmarks.row_stream times the structure pass three ways on the same model and reports
    how far apart their pixels are: float rounding for the stream, none for the cut graph."""
    from benchmarks.row_stream import markdown, measure

    data = measure(tiny_torch_model, tiny_model_dir, size=64, chunk_rows=8, rounds=1, threads=1)
    assert data["max_abs_difference"] < 1e-4
    assert data["cut_bit_identical"]  # the cut graph's halves give the whole graph's bits
    assert set(data["s_per_output_mpx"]) == {"whole", "strips", "stream", "cut"}
    assert all(rate > 0 for rate in data["s_per_output_mpx"].values())
    assert data["graphs"]["lag"] == 2 + 15 * len(tiny_torch_model.coarse.body)
    assert "Stream over strips" in markdown(data)
