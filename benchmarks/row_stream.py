"""Would streaming the coarse body by rows beat today's structure strips? Measured, not shipped.

A tiled image's structure pass (``larsr_cli.twopass.StructureRows``) runs the whole coarse
graph on strips that each recompute its 34 px receptive field; on a 1024 px input that is 1.41
LR px per kept one. ``export.networks.coarse_rows`` computes every row once instead: the body
fed a chunk of rows at a time with a few rows of history per layer, and the 2 px upsampling
tail on thin windows. This script exports both halves from a checkpoint (the shipped weights by
default), then times, in alternating rounds:

- ``whole``: the coarse graph once on a 256 px image (no tiling: the rate to match);
- ``strips``: the structure pass larsr runs today for an N px input (its own plan and budget);
- ``stream``: the same rows through the stream (the body in chunks of ``--chunk-rows`` rows);
- ``cut``: the model's coarse.onnx cut where its LR features end (``onnx.utils.Extractor``),
  the body on strips sized at its own, halved, memory per px and the tail on 2 px windows.

It also checks how far each gives the strips' pixels (the cut: bit for bit) and profiles which
operators the stream and the whole body spend their time in.

Neither is shipped. Both were wired into the pipeline and timed against the strips in one
process, alternating, three rounds each, on a tiled 1024 px input (2-core EPYC, 2026-12-04):

- the stream: coarse stage 0.60-0.69 s per output Mpx against 0.59-0.66;
- the cut, output bit-identical to the strips': 0.58-0.63 against 0.56-0.64 with a trim after
  every strip as today. Trimming once per pass instead made it 0.52-0.56 against 0.54-0.61, but
  the CLI then peaked at 1529 MiB, over the 1.5 GB bar (1093-1242 MiB with the trims).

In this VM a freed page that is touched again seconds later costs 0.5 GB/s to fault in
(``benchmarks.refault``). The strips' refaults then cost about what the cut saves in arithmetic.
Where faults are cheap (bare metal: several GB/s), the cut is the one to try first.

    python -m benchmarks.row_stream [--checkpoint export/checkpoints/larsr-x4-round6.pt] [--size 1024]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_RESULTS, machine_info, write_json

DEFAULT_CHECKPOINT = Path("export/checkpoints/larsr-x4-round6.pt")
DEFAULT_MODEL = Path("models/larsr-x4")


def export_stream_graphs(model: Any, out: Path) -> dict[str, Any]:
    """``body_rows.onnx`` (the stream), ``body.onnx`` (the whole body) and ``tail.onnx`` of a
    ``LarsrModel``'s coarse net."""
    import torch
    from torch import nn

    from export.networks.coarse_rows import CoarseBodyRows

    coarse = model.coarse.eval()

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.coarse = coarse

        def forward(self, lr: torch.Tensor) -> torch.Tensor:
            return self.coarse.body_features(lr)

    class Tail(Body):
        def forward(self, lr: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return self.coarse.upsample(lr, features)

    rows = CoarseBodyRows(coarse).eval()
    layout = rows.layout()
    w = 20
    histories = [torch.zeros(1, c, d, w) for c, d in layout]
    names = [f"history_{i}" for i in range(len(layout))]
    nexts = [f"next_history_{i}" for i in range(len(layout))]
    dynamic: dict[str, dict[int, str]] = {"lr_rows": {2: "rows", 3: "w"}, "features": {2: "rows", 3: "w"}}
    dynamic.update({n: {3: "w"} for n in names + nexts})
    lr = torch.rand(1, 3, 8, w)
    args = dict(opset_version=17, dynamo=False, do_constant_folding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            rows,
            (lr, torch.tensor([0]), torch.tensor([30]), *histories),
            str(out / "body_rows.onnx"),
            input_names=["lr_rows", "first_row", "height", *names],
            output_names=["features", *nexts],
            dynamic_axes=dynamic,
            **args,
        )
        torch.onnx.export(
            Body().eval(),
            (lr,),
            str(out / "body.onnx"),
            input_names=["lr"],
            output_names=["features"],
            dynamic_axes={"lr": {2: "h", 3: "w"}, "features": {2: "h", 3: "w"}},
            **args,
        )
        features = coarse.body_features(lr)
        torch.onnx.export(
            Tail().eval(),
            (lr, features),
            str(out / "tail.onnx"),
            input_names=["lr", "features"],
            output_names=["xc"],
            dynamic_axes={"lr": {2: "h", 3: "w"}, "features": {2: "h", 3: "w"}},
            **args,
        )
    return {
        "lag": rows.lag,
        "histories": len(layout),
        "history_rows_x_channels": sum(c * d for c, d in layout),
    }


class StreamedStructure:
    """The structure image by rows: the body stream run ahead of a tail run on windows with a
    ``margin`` (the tail's 2 px receptive field). ``fill`` is asked for consecutive rows."""

    def __init__(
        self, body: Any, tail: Any, lr: np.ndarray, scale: int, lag: int, tail_margin: int, chunk_rows: int
    ) -> None:
        self.body, self.tail, self.lr, self.scale, self.lag = body, tail, lr, scale, lag
        self.height, self.width = lr.shape[:2]
        self.chunk_rows, self.margin = chunk_rows, tail_margin
        self.names = [i.name for i in body.get_inputs() if i.name.startswith("history_")]
        shapes = {i.name: i.shape for i in body.get_inputs()}
        self.histories = {
            n: np.zeros((1, shapes[n][1], shapes[n][2], self.width), np.float32) for n in self.names
        }
        self.fed = 0
        self.features: np.ndarray | None = None  # rows features_y0.. of the stream's output
        self.features_y0 = 0

    def _feed(self) -> None:
        h, w = self.height, self.width
        rows = min(self.chunk_rows, h + self.lag - self.fed)
        chunk = np.zeros((1, 3, rows, w), np.float32)
        real = max(0, min(rows, h - self.fed))
        if real:
            chunk[0, :, :real] = self.lr[self.fed : self.fed + real].transpose(2, 0, 1)
        feeds = {
            "lr_rows": chunk,
            "first_row": np.array([self.fed]),
            "height": np.array([h]),
            **self.histories,
        }
        features, *histories = self.body.run(None, feeds)
        self.histories = dict(zip(self.names, histories, strict=True))
        first = self.fed - self.lag
        lo, hi = max(0, -first), min(rows, h - first)
        if hi > lo:
            kept = features[:, :, lo:hi]
            self.features = kept if self.features is None else np.concatenate([self.features, kept], axis=2)
        self.fed += rows

    def _feature_rows(self, y0: int, y1: int) -> np.ndarray:
        while self.features is None or self.features_y0 + self.features.shape[2] < y1:
            self._feed()
        if y0 > self.features_y0:
            self.features = self.features[:, :, y0 - self.features_y0 :]
            self.features_y0 = y0
        return np.ascontiguousarray(self.features[:, :, : y1 - y0])

    def fill(self, y0: int, y1: int, out: np.ndarray) -> None:
        s, m = self.scale, self.margin
        step = max(1, self.chunk_rows - 2 * m)
        for a in range(y0, y1, step):
            b = min(a + step, y1)
            w0, w1 = max(0, a - m), min(self.height, b + m)
            lr = np.ascontiguousarray(self.lr[w0:w1].transpose(2, 0, 1)[None])
            xc = self.tail.run(None, {"lr": lr, "features": self._feature_rows(w0, w1)})[0]
            out[:, (a - y0) * s : (b - y0) * s] = xc[0, :, (a - w0) * s : (b - w0) * s]


#: Peak bytes per LR px of the two halves of the cut coarse graph (fresh process, 512 px input,
#: peak RSS over the sessions' base), with the heap's slack on top: 2.9 and 5.0 KB measured.
BODY_BYTES_PER_PX, TAIL_BYTES_PER_PX = 3584, 5632


def cut_coarse_graph(model_dir: Path, out: Path) -> str:
    """``cut_body.onnx`` and ``cut_tail.onnx``: the model's own coarse.onnx cut where the LR
    features end (``onnx.utils.Extractor``), which onnxruntime runs to the whole graph's bits.
    Returns the name of the features tensor."""
    import onnx
    import onnx.utils

    graph = onnx.load(str(model_dir / "coarse.onnx"))
    upsample = next(n for n in graph.graph.node if n.op_type == "Resize")  # the first 2x upsampling
    features = upsample.input[0]
    cutter = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(graph))  # as extract_model does
    onnx.save(cutter.extract_model(["lr"], [features]), str(out / "cut_body.onnx"))
    onnx.save(cutter.extract_model(["lr", features], ["xc"]), str(out / "cut_tail.onnx"))
    return features


class CutStrips:
    """Structure rows from the cut graph: the body on strips with its own margin (its 32 px) at
    its own memory per px (bigger strips than the whole graph's), the tail on windows with its
    (2 px)."""

    def __init__(
        self,
        body: Any,
        tail: Any,
        features: str,
        lr: np.ndarray,
        up: Any,
        margins: tuple[int, int],
        strip_bytes: int,
    ) -> None:
        self.body, self.tail, self.features, self.lr, self.scale = body, tail, features, lr, up.scale
        self.multiple = up.manifest.tile_multiple
        self.body_margin, self.tail_margin = margins
        self.body_px = strip_bytes // BODY_BYTES_PER_PX
        self.tail_px = strip_bytes // TAIL_BYTES_PER_PX

    def fill(self, y0: int, y1: int, out: np.ndarray) -> None:
        from larsr_cli.tiling import Box, hr_slices, lr_window, plan_strips

        h, w = self.lr.shape[:2]
        f0, f1 = max(0, y0 - self.tail_margin), min(h, y1 + self.tail_margin)
        rows = Box(f0, f1, 0, w)
        feats: np.ndarray | None = None
        for strip in plan_strips(f0, f1, h, w, self.body_margin, self.multiple, self.body_px):
            f = self.body.run(None, {"lr": lr_window(self.lr, strip.context)})[0]
            if feats is None:
                feats = np.empty((1, f.shape[1], f1 - f0, w), np.float32)
            into, take = hr_slices(strip.own, rows, 1), hr_slices(strip.own, strip.context, 1)
            feats[0, :, into[0], into[1]] = f[0, :, take[0], take[1]]
        assert feats is not None
        s, band = self.scale, Box(y0, y1, 0, w)
        for window in plan_strips(y0, y1, h, w, self.tail_margin, self.multiple, self.tail_px):
            c = window.context
            inputs = {
                "lr": lr_window(self.lr, c),
                self.features: np.ascontiguousarray(feats[:, :, c.y0 - f0 : c.y1 - f0, c.x0 : c.x1]),
            }
            xc = self.tail.run(None, inputs)[0]
            into, take = hr_slices(window.own, band, s), hr_slices(window.own, c, s)
            out[:, into[0], into[1]] = xc[0, :, take[0], take[1]]


def structure_pass(up: Any, lr: np.ndarray, tiles: list[Any], fill: Any = None) -> np.ndarray:
    """What ``Upscaler`` computes as the structure of ``lr`` tiled into ``tiles``: the windows of
    its bands (``twopass.StructureRows``), strips of the whole coarse graph unless ``fill``
    replaces them (the runtime has no such hook: the variants live here only). Returns the
    windows' rows joined (the whole structure image)."""
    from larsr_cli.twopass import StructureRows, bands_of

    h, w = lr.shape[:2]
    rows = StructureRows(
        up.arch.structure,
        lr,
        up.scale,
        up.manifest.margin_of(up.arch.structure_stages),
        up.manifest.tile_multiple,
        up.strip_pixels(tiles, w),
    )
    if fill is not None:
        rows._compute = fill  # type: ignore[method-assign]
    s = up.scale
    out = np.empty((3, h * s, w * s), np.float32)
    for band in bands_of(tiles):
        window = rows.window(band.y0, band.y1)
        out[:, band.y0 * s : band.y1 * s] = window
    return out


def op_shares(path: Path, feeds: list[dict[str, np.ndarray]], threads: int) -> dict[str, float]:
    """Share of kernel time per operator type (onnxruntime's profiler) over ``feeds``."""
    import onnxruntime as ort

    from larsr_cli.sessions import session_options

    opts = session_options(threads)
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for feed in feeds:
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    total: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
    whole = sum(total.values()) or 1
    return {op: round(100 * t / whole, 1) for op, t in total.most_common(6)}


def measure(
    model: Any, folder: Path, size: int, chunk_rows: int, rounds: int, threads: int
) -> dict[str, Any]:
    """``model`` (a ``LarsrModel``) must be the one whose graphs ``folder`` holds: the strips run
    the folder's coarse graph, the stream this model's coarse net."""
    from larsr_cli.pipeline import Upscaler
    from larsr_cli.sessions import open_session, parse_device

    up = Upscaler(folder, threads=threads)
    rng = np.random.default_rng(0)
    lr = rng.random((size, size, 3), dtype=np.float32)
    small = np.ascontiguousarray(rng.random((1, 3, 256, 256), dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        graphs_dir = Path(tmp)
        graphs = export_stream_graphs(model, graphs_dir)
        device = parse_device("cpu")
        body = open_session(graphs_dir / "body_rows.onnx", device, threads)
        tail = open_session(graphs_dir / "tail.onnx", device, threads)

        tiles = up.plan(size, size)
        # The body's receptive field is its lag (one row per 3x3 conv); the tail has the rest.
        margins = (graphs["lag"], up.manifest.receptive_field["coarse"] - graphs["lag"])

        def stream() -> np.ndarray:
            s = StreamedStructure(body, tail, lr, up.scale, graphs["lag"], margins[1], chunk_rows)
            return structure_pass(up, lr, tiles, s.fill)

        features = cut_coarse_graph(folder, graphs_dir)
        cut_body = open_session(graphs_dir / "cut_body.onnx", device, threads)
        cut_tail = open_session(graphs_dir / "cut_tail.onnx", device, threads)
        strip_bytes = up.strip_pixels(tiles, size) * up.arch.structure_bytes_per_lr_pixel()

        def cut() -> np.ndarray:
            strips = CutStrips(cut_body, cut_tail, features, lr, up, margins, strip_bytes)
            return structure_pass(up, lr, tiles, strips.fill)

        strips_img, stream_img, cut_img = structure_pass(up, lr, tiles), stream(), cut()
        up.arch.structure(small)
        seconds: dict[str, list[float]] = {"whole": [], "strips": [], "stream": [], "cut": []}
        for _ in range(rounds):
            for name, run in (
                ("whole", lambda: up.arch.structure(small)),
                ("strips", lambda: structure_pass(up, lr, tiles)),
                ("stream", stream),
                ("cut", cut),
            ):
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
        tiled_mpx = size * size * up.scale**2 / 1e6
        out_mpx = {
            "whole": 256 * 256 * up.scale**2 / 1e6,
            "strips": tiled_mpx,
            "stream": tiled_mpx,
            "cut": tiled_mpx,
        }
        rates = {k: round(min(v) / out_mpx[k], 4) for k, v in seconds.items()}
        chunk = rng.random((1, 3, chunk_rows, size), dtype=np.float32)
        hist = {
            i.name: np.zeros((1, i.shape[1], i.shape[2], size), np.float32)
            for i in body.get_inputs()
            if i.name.startswith("history_")
        }
        rows_feed = {"lr_rows": chunk, "first_row": np.array([100]), "height": np.array([4 * size]), **hist}
        side = int((chunk_rows * size) ** 0.5)
        body_feed = {"lr": rng.random((1, 3, side, side), dtype=np.float32)}
        shares = {
            "stream body": op_shares(graphs_dir / "body_rows.onnx", [rows_feed] * 4, threads),
            "whole body": op_shares(graphs_dir / "body.onnx", [body_feed] * 4, threads),
        }
    tiles = up.plan(size, size)
    return {
        "size": size,
        "chunk_rows": chunk_rows,
        "rounds": rounds,
        "threads": threads,
        "texture_tiles": len(tiles),
        "graphs": graphs,
        "s_per_output_mpx": rates,
        "s_per_output_mpx_all": {k: [round(x / out_mpx[k], 4) for x in v] for k, v in seconds.items()},
        "stream_over_strips": round(rates["stream"] / rates["strips"], 3),
        "strips_over_whole": round(rates["strips"] / rates["whole"], 3),
        "stream_over_whole": round(rates["stream"] / rates["whole"], 3),
        "max_abs_difference": float(np.abs(stream_img - strips_img).max()),
        "bit_identical": bool(np.array_equal(stream_img, strips_img)),
        "cut_over_strips": round(rates["cut"] / rates["strips"], 3),
        "cut_bit_identical": bool(np.array_equal(cut_img, strips_img)),
        "operator_time_percent": shares,
    }


def markdown(data: dict[str, Any]) -> str:
    from benchmarks.report import md_table

    r, n = data["s_per_output_mpx"], data["size"]
    passes = [
        ("whole coarse graph, 256² input (untiled)", "whole"),
        (f"strips (larsr today), {n}² input", "strips"),
        (f"row stream ({data['chunk_rows']}-row chunks) + tail windows, {n}² input", "stream"),
        (f"coarse graph cut in two: body strips + tail windows, {n}² input", "cut"),
    ]
    rows = [[label, f"{r[key]:.3f}", f"{r[key] / r['whole']:.2f}"] for label, key in passes]
    lines = [
        md_table(["structure pass", "s / output Mpx", "× whole 256²"], rows),
        "",
        f"- Stream over strips: **{data['stream_over_strips']:.2f}x**; the stream's pixels differ from the "
        f"strips' by at most {data['max_abs_difference']:.1e} (bit-identical: {data['bit_identical']}: "
        "onnxruntime fuses the two graphs' operations differently).",
        "- Not shipped: wired into the pipeline, a tiled run was no faster within noise "
        "(`export/networks/coarse_rows.py` has the figures).",
        f"- The cut graph (coarse.onnx split where the LR features end, `onnx.utils.Extractor`): "
        f"**{data['cut_over_strips']:.2f}x** the strips' time, bit-identical to them: "
        f"{data['cut_bit_identical']}; the body's strips hold twice the pixels (its peak memory per px "
        "is half the whole graph's) and the tail needs a 2 px margin. Not shipped either: inside a tiled "
        "run this VM's refaults ate the gain (`benchmarks/row_stream.py` has the figures).",
    ]
    for name, shares in data["operator_time_percent"].items():
        parts = ", ".join(f"{op} {p:g}%" for op, p in shares.items())
        lines.append(f"- Kernel time of the {name}: {parts}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.row_stream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder whose plan is used")
    parser.add_argument("--size", type=int, default=1024, help="LR side of the tiled input (default 1024)")
    parser.add_argument("--chunk-rows", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if args.size < 64 or args.chunk_rows < 1 or args.rounds < 1:
        parser.error("--size must be at least 64, --chunk-rows and --rounds at least 1")
    data = {
        "kind": "row_stream",
        "command": "python -m benchmarks.row_stream "
        f"--size {args.size} --chunk-rows {args.chunk_rows} --rounds {args.rounds} --threads {args.threads}",
        "machine": machine_info(),
    }
    from export.model import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint)
    data.update(measure(model, args.model, args.size, args.chunk_rows, args.rounds, args.threads))
    print(markdown(data))
    write_json(args.out / "row_stream.json", data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
