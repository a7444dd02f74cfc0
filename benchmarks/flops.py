"""FLOPs per output pixel of a model folder's graphs, counted from the ONNX files themselves.

``python -m benchmarks.flops --model models/larsr-x4 [--json] [--size 64]``

Why count from the graphs and not from the PyTorch modules: the shipped ONNX files are what users
run, so the budget (issue: at most 200 kFLOP per output pixel) is checked on exactly that. Shapes
come from onnx shape inference on a fixed LR size; convolutions, matrix products and Gemms are
counted (2 FLOPs per multiply-add); elementwise ops are left out, as every SR paper does. The LAR
step graph runs once per token of a patch (``patch_size**2 / codes_per_step`` times per image), so its
count is multiplied by that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from larsr_cli.manifest import read_manifest


def _runtime_shapes(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Every tensor's shape in one onnxruntime run on zeros.

    Static shape inference loses track of shapes behind Reshape/Where in the LAR step graph; making
    every node output a graph output and running the graph once gives the real shapes instead.
    """
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in session.get_inputs():
        dtype = np.int64 if "int64" in inp.type else np.float32
        feeds[inp.name] = np.zeros(input_shapes[inp.name], dtype=dtype)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    shapes = {n: list(np.shape(v)) for n, v in zip(names, values, strict=True)}
    shapes.update({k: list(v) for k, v in input_shapes.items()})
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def graph_flops(path: Path, input_shapes: dict[str, list[int]]) -> int:
    """FLOPs of one run of the graph at the given input shapes."""
    model = onnx.load(str(path))
    shapes = _runtime_shapes(model, input_shapes)
    macs = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w, out = shapes[node.input[1]], shapes[node.output[0]]
            # weight (Cout, Cin/groups, kh, kw): each output element costs Cin/groups*kh*kw MACs
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            k = a[0] if node.op_type == "Gemm" and _attr(node, "transA") else a[-1]
            macs += int(np.prod(out)) * int(k)
    return 2 * macs


def _attr(node: onnx.NodeProto, name: str) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return 0


def lar_input_shapes(model_dir: Path, lr: int) -> tuple[dict[str, dict[str, list[int]]], int]:
    """Input shapes of the four LAR-SR graphs for an ``lr x lr`` tile, and the number of LAR steps.

    The condition graph is run once on a blank tile to read its output shapes, so the count follows
    whatever layout the exported graphs have rather than a formula that could drift from them.
    """
    import onnxruntime as ort

    manifest = read_manifest(model_dir)
    lar = manifest.spec
    scale = int(manifest.scale)
    hr = lr * scale
    cond_sess = ort.InferenceSession(str(model_dir / "condition.onnx"), providers=["CPUExecutionProvider"])
    cond, start = cond_sess.run(None, {"xc": np.zeros((1, 3, hr, hr), np.float32)})
    patches = int(np.prod(cond.shape[:3]))
    step = {"prev_code": list(lar.prev_code_shape(*cond.shape[1:3])), "t": [1]}
    step.update(cond=list(cond.shape), start=list(start.shape))
    # The cache inputs as the step graph declares them (its layout): the filled prefix half the
    # tokens (the mean over a patch's steps), the patch count filled in.
    step_sess = ort.InferenceSession(str(model_dir / "lar_step.onnx"), providers=["CPUExecutionProvider"])
    for graph_input in step_sess.get_inputs():
        if graph_input.name.startswith("past_"):
            _filled, *rest = graph_input.shape
            dims = [d if isinstance(d, int) else patches for d in rest]
            step[graph_input.name] = [max(1, lar.tokens // 2), *dims]
    grid = lr * int(lar.index_stride)  # index map cells per LR pixel
    shapes = {
        "coarse": {"lr": [1, 3, lr, lr]},
        "condition": {"xc": [1, 3, hr, hr]},
        "lar_step": step,
        "decoder": {"indices": [1, grid, grid], "xc": [1, 3, hr, hr]},
    }
    return shapes, int(lar.tokens)


def count(model_dir: Path, lr: int = 64) -> dict[str, Any]:
    """FLOPs per output pixel by graph role for one ``lr x lr`` tile without margin."""
    manifest = read_manifest(model_dir)
    shapes, steps = lar_input_shapes(model_dir, lr)
    out_pixels = (lr * int(manifest.scale)) ** 2
    graphs = {}
    for role, inputs in shapes.items():
        runs = steps if role == "lar_step" else 1
        path = model_dir / manifest.graphs[role].file
        graphs[role] = round(graph_flops(path, inputs) * runs / out_pixels)
    total = sum(graphs.values())
    return {
        "model": str(model_dir),
        "lr_size": lr,
        "flops_per_output_pixel": total,
        "graphs": graphs,
        "share": {k: round(v / total, 3) for k, v in graphs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/larsr-x4", help="model folder or embedded name")
    p.add_argument("--size", type=int, default=64, help="LR side of the counted tile")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    result = count(Path(args.model), args.size)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']}: {result['flops_per_output_pixel'] / 1e3:.1f} kFLOP per output pixel")
    for role, flops in result["graphs"].items():
        print(f"  {role:10s} {flops / 1e3:8.1f} k  ({100 * result['share'][role]:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
