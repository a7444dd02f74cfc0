"""Export a LAR-SR checkpoint to the ONNX graph contract of the runtime.

``python -m export.to_onnx --checkpoint ckpt.pt --out models/NAME`` writes ``coarse.onnx``,
``condition.onnx``, ``lar_step.onnx``, ``decoder.onnx`` and ``manifest.json``. Without a checkpoint
(``--config tiny``) it exports a randomly initialised model, which is what the tests run on.

Every graph takes dynamic height/width. The LAR step graph reads a cache of earlier positions'
keys/values and returns only this position's; the runtime writes them into its numpy cache, so a
step costs one position's work instead of recomputing all of them.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from larsr_cli.arch import LarSpec, LarSR
from larsr_cli.arch.lar import CACHE_LAYOUT, CACHE_LAYOUT_KEY
from larsr_cli.integrity import sha256_of
from larsr_cli.manifest import FORMAT_VERSION, GraphFile, Manifest, write_manifest

from .configs import parse_overrides
from .model import LarsrModel, load_checkpoint
from .receptive_field import measure

OPSET = 17


class CoarseGraph(nn.Module):
    def __init__(self, model: LarsrModel) -> None:
        super().__init__()
        self.coarse = model.coarse

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.coarse(lr)


class ConditionGraph(nn.Module):
    def __init__(self, model: LarsrModel) -> None:
        super().__init__()
        self.lar = model.lar

    def forward(self, xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token condition (``token_condition``: the step graph's ``cond``) and start feature."""
        cond, start = self.lar.condition(xc)
        return self.lar.token_condition(cond), start


class StepGraph(nn.Module):
    """Inputs ``prev_code, t, cond, start, past_k_0, past_v_0, past_k_1, ...``: one cache tensor per
    layer and kind, so onnxruntime reads the runtime's numpy buffers in place (slicing one big
    cache tensor inside the graph copied all of it every step)."""

    def __init__(self, model: LarsrModel) -> None:
        super().__init__()
        self.lar = model.lar

    def forward(self, prev_code, t, cond, start, *past):  # noqa: ANN001 - names are the graph's inputs
        pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
        return self.lar.step(prev_code, t, cond, start, pairs)


def past_names(layers: int) -> list[str]:
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("k", "v")]


class FullLARGraph(nn.Module):
    """Teacher-forced recompute of all positions; exported only for parity and speed comparisons."""

    def __init__(self, model: LarsrModel) -> None:
        super().__init__()
        self.lar = model.lar

    def forward(self, xc: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return self.lar(xc, indices)


class DecoderGraph(nn.Module):
    def __init__(self, model: LarsrModel) -> None:
        super().__init__()
        self.vqvae = model.vqvae

    def forward(self, indices: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        return self.vqvae.decode(indices, xc)


def example_inputs(model: LarsrModel, lr_size: int = 16) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs for tracing each graph, from an ``lr_size`` square LR image."""
    cfg = model.cfg
    s, k = cfg.scale, cfg.patch_size
    lr = torch.rand(1, 3, lr_size, lr_size)
    with torch.no_grad():
        xc = model.coarse(lr)
        cond, start = model.lar.condition(xc)
        cond = model.lar.token_condition(cond)
    hp = wp = 2 * lr_size // k
    indices = torch.randint(0, cfg.codebook_size, (1, 2 * lr_size, 2 * lr_size))
    # A prefix of 3 filled positions: the traced graph must not bake in the cache's full length.
    prefix = model.lar.cache_prefix(model.lar.empty_cache(1, hp, wp), 3)
    past = [torch.randn_like(a) for pair in prefix for a in pair]
    prev = torch.randint(0, cfg.codebook_size, model.lar.prev_code_shape(1, hp, wp))
    t = torch.tensor([3], dtype=torch.int64)
    assert xc.shape[-1] == lr_size * s
    return {
        "coarse": (lr,),
        "condition": (xc,),
        "lar_step": (prev, t, cond, start, *past),
        "lar_full": (xc, indices),
        "decoder": (indices, xc),
    }


GRAPH_SPECS: dict[str, dict[str, Any]] = {
    "coarse": {
        "module": CoarseGraph,
        "inputs": ["lr"],
        "outputs": ["xc"],
        "dynamic": {"lr": {2: "h", 3: "w"}, "xc": {2: "H", 3: "W"}},
    },
    "condition": {
        "module": ConditionGraph,
        "inputs": ["xc"],
        "outputs": ["cond", "start"],
        "dynamic": {"xc": {2: "H", 3: "W"}, "cond": {1: "hp", 2: "wp"}, "start": {1: "hp", 2: "wp"}},
    },
    "lar_step": {
        "module": StepGraph,
        "inputs": ["prev_code", "t", "cond", "start"],  # + past_names(layers), added at export
        "outputs": ["logits", "new_kv"],
        "dynamic": {
            "prev_code": {1: "hp", 2: "wp"},
            "cond": {1: "hp", 2: "wp"},
            "start": {1: "hp", 2: "wp"},
            "logits": {1: "hp", 2: "wp"},
            "new_kv": {4: "patches"},
        },
    },
    "lar_full": {
        "module": FullLARGraph,
        "inputs": ["xc", "indices"],
        "outputs": ["logits"],
        "dynamic": {"xc": {2: "H", 3: "W"}, "indices": {1: "h2", 2: "w2"}, "logits": {1: "h2", 2: "w2"}},
    },
    "decoder": {
        "module": DecoderGraph,
        "inputs": ["indices", "xc"],
        "outputs": ["sr"],
        "dynamic": {"indices": {1: "h2", 2: "w2"}, "xc": {2: "H", 3: "W"}, "sr": {2: "H", 3: "W"}},
    },
}

# The graph roles come from the runtime's architecture: one list, read by both sides.
SHIPPED = LarSR.graph_roles


def export_graph(model: LarsrModel, name: str, path: Path) -> Path:
    spec = GRAPH_SPECS[name]
    module = spec["module"](model).eval()
    inputs = example_inputs(model)[name]
    input_names, dynamic = list(spec["inputs"]), dict(spec["dynamic"])
    if name == "lar_step":
        past = past_names(model.cfg.lar_layers)
        input_names += past
        dynamic.update({p: {0: "filled", 3: "patches"} for p in past})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-to-int conversions are expected
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=input_names,
            output_names=spec["outputs"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    if name == "lar_step":  # the runtime refuses a step graph whose cache layout it does not know
        onnx.helper.set_model_props(graph, {CACHE_LAYOUT_KEY: CACHE_LAYOUT})
        onnx.save(graph, str(path))
    onnx.checker.check_model(graph, full_check=True)
    return path


def build_manifest(
    model: LarsrModel, out: Path, name: str, extra: dict[str, Any], default_temperature: float
) -> Manifest:
    cfg = model.cfg
    graphs = {}
    for role in SHIPPED:
        path = out / f"{role}.onnx"
        graphs[role] = GraphFile(path.name, sha256_of(path), path.stat().st_size)
    spec = LarSpec(
        patch_size=cfg.patch_size,
        codebook_size=cfg.codebook_size,
        index_stride=2,
        layers=cfg.lar_layers,
        heads=cfg.lar_heads,
        features=cfg.lar_features,
        coarse_up_features=cfg.coarse_up_features,
        codes_per_step=cfg.lar_codes_per_step,
        default_temperature=default_temperature,
        default_texture=float(extra.get("default_texture", 1.0)),
    )
    return Manifest(
        format_version=FORMAT_VERSION,
        name=name,
        architecture=LarSR.id,
        scale=cfg.scale,
        tile_multiple=max(1, cfg.patch_size // 2),  # LR px per code patch: keeps patches on the global grid
        receptive_field=measure(model),
        graphs=graphs,
        spec=spec,
        licence=extra.get("licence", "MIT (code); weights: see training_data"),
        training_data=extra.get("training_data", {"note": "randomly initialised, not trained"}),
        config=cfg.to_dict(),
        metrics=extra.get("metrics", {}),
    )


def export_model(
    model: LarsrModel,
    out: Path,
    name: str,
    extra: dict[str, Any] | None = None,
    default_temperature: float = 0.8,
    with_full: bool = False,
) -> Manifest:
    """Write all graphs plus the manifest; ``with_full`` adds the parity-only ``lar_full.onnx``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    for graph in SHIPPED + (("lar_full",) if with_full else ()):
        export_graph(model, graph, out / f"{graph}.onnx")
    manifest = build_manifest(model, out, name, extra or {}, default_temperature)
    write_manifest(out, manifest)
    return manifest


def weights_licence(provenance: dict[str, Any]) -> str:
    """The licence line, derived from the per-package licences the provenance records."""
    licences = sorted({lic for p in provenance["packages"].values() for lic in p["licences"]})
    return "code MIT; weights trained on photos under " + "; ".join(licences)


def training_provenance(photos_dir: Path) -> dict[str, Any]:
    """Where the weights' training photos came from: packages, versions, licences and the split."""
    from .data import read_manifest, select

    entries = read_manifest(photos_dir)
    packages: dict[str, dict[str, Any]] = {}
    for e in select(entries, "train"):
        pkg = packages.setdefault(
            str(e["package"]), {"version": e["version"], "licences": set(), "photos": 0}
        )
        pkg["licences"].add(str(e.get("license") or "see the package's copyright file"))
        pkg["photos"] += 1
    return {
        "source": (
            "photographs and photographic textures shipped in Debian packages "
            "(shared/data/training-photos.tsv, export/extra-photos.tsv)"
        ),
        "train_photos": sum(p["photos"] for p in packages.values()),
        "validation_photos": sorted(str(e["name"]) for e in select(entries, "val")),
        "held_out_packages": sorted({str(e["package"]) for e in select(entries, "detail", True)}),
        "packages": {
            name: {**info, "licences": sorted(info["licences"])} for name, info in sorted(packages.items())
        },
        "degradation": "x4 antialiased bicubic (PIL kernel, a=-0.5), LR rounded to 8 bit",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint (omit for random weights)")
    parser.add_argument("--config", default="small", help="config name when no checkpoint is given")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", help="model name in the manifest (default: folder name)")
    parser.add_argument("--temperature", type=float, help="default sampling temperature")
    parser.add_argument("--with-full", action="store_true", help="also export lar_full.onnx (parity)")
    parser.add_argument("--data", type=Path, help="photo folder the weights were trained on (provenance)")
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config fields that need no weights of their own, e.g. vq_lr_project=2",
    )
    args = parser.parse_args(argv)
    if args.checkpoint:
        model, extra = load_checkpoint(args.checkpoint, parse_overrides(args.override))
    else:
        model, extra = LarsrModel.from_name(args.config), {}
    if args.data:
        extra = {**extra, "training_data": training_provenance(args.data)}
        extra["licence"] = weights_licence(extra["training_data"])
    temperature = args.temperature if args.temperature is not None else extra.get("default_temperature", 0.8)
    manifest = export_model(model, args.out, args.name or args.out.name, extra, temperature, args.with_full)
    print(json.dumps({"out": str(args.out), "receptive_field": manifest.receptive_field}, indent=2))


if __name__ == "__main__":
    main()
