"""Static int8 (QDQ) variants of a model's graphs, calibrated on training photos, gated on quality.

``python -m export.quantize --model DIR [--data data/photos] [--roles ...] [--crops 24]`` writes
``<role>.int8.onnx`` beside the fp32 graphs and lists them under the manifest's ``precisions``
only if the int8 model stays within the quality floor of the fp32 one on both validation sets;
``larsr upscale --precision int8`` (or ``auto`` on a VNNI/AMX CPU) then runs them.

The recipe: ``quant_pre_process``, then ``quantize_static`` in QDQ format, MinMax calibration,
uint8 activations, int8 weights per channel, ``MatMulConstBOnly`` (the attention matmuls between
two activations stay fp32). Static scales make an int8 output a pure function of its input like
the fp32 one, so seeds and tiles stay exact. Two choices on top, both measured on larsr-x4:

- Only Conv, MatMul and Gemm are quantised; the adds, concatenations, activations and masks
  between them stay fp32. Quantising every op (the probe behind this module: coarse graph 2x
  faster, detail set -0.009 dB) puts the output image itself on an 8-bit grid and the residual
  stream through uint8: on the soft ``val`` set that cost -0.37 dB PSNR-Y (whole pipeline, coarse
  graph alone), far past the floor; in the LAR step it gave the -inf attention mask an infinite
  scale.
- Outlier nodes stay fp32 (``noisy_nodes``): each node is quantised alone on calibration feeds and
  kept fp32 when that costs its graph's output 10 dB more SNR than the median node. In the coarse
  graph those are the six convolutions outside the RRDB body (first, trunk, both upsampling, HR,
  last: 53-59 dB against 66-81 dB in the body); quantised, they cost 0.02-0.08 dB each on ``val``.

Calibration inputs are the runtime's own: every graph's feeds (the LR image, the coarse image,
the condition vectors, the key/value cache and drawn codes) are recorded from the fp32
``Upscaler`` on 24 LR crops of 256 px HR crops from the training split (fixed seed). The ``val``
and ``detail`` sets are never calibrated on: they are what the floor is measured on.

Why the default roles are ``coarse`` alone (larsr-x4 on this 2-core machine, training running
beside it; 256x256 input, 2 threads): quality held for all four graphs (quantised together:
``val`` PSNR-Y 35.334 -> 35.317 dB, LPIPS 0.2143 -> 0.2140, DISTS 0.1700 -> 0.1701; ``detail``
25.243 -> 25.239 dB, LPIPS 0.3228 -> 0.3226, DISTS 0.2393 -> 0.2395), but only the coarse graph
got faster (2.6-3.1 s -> 2.3-2.4 s). ``lar_step`` kept quality (alone: +0.001 / -0.0003 dB) and
got slower, 5.4 -> 8.7 s for its 16 steps: its matmuls are thin (48 features) and the attention
around them stays fp32, so the quantise/dequantise passes cost more than the int8 products
save. The decoder got slower too (0.5 -> 0.8-1.0 s: three of its seven convolutions are
outliers) and the condition graph broke even (0.65-0.73 s either way). ``--roles`` quantises
any of them; the floor still decides. Re-checked on round 6 on a 2-core AMD EPYC with AVX-512
VNNI and AVX-VNNI (int8 conv peak 8x the fp32 one there), per graph on one 256 px input: coarse
0.60 -> 0.43 s, condition 0.11 -> 0.14 s, lar_step 0.36 -> 0.33 s for its 8 steps, decoder
0.28 -> 0.36 s: the same picture, so ``coarse`` stays the default. Its int8 coarse graph passed
the floor there but is not shipped (benchmarks/results/int8.json): once tensors reused heap pages
(``larsr_cli.heap``) the fp32 chain got faster and the int8 one gained 4% at 256 px, lost 7% on a
tiled 4096 px output and peaked 200 MiB higher, and ``--precision auto`` would pick it on such a
CPU. On an Intel Xeon with AMX (2026-12-03) no role got faster either: onnxruntime's int8 GEMM
runs on AMX (10x its fp32 GEMM) but QLinearConv with symmetric int8 weights takes the VNNI
symmetric-conv kernel, and coarse, lar_step and decoder ran 1.28-1.46x slower than fp32
(results/int8.json, ``probes``). A ``lar_step`` run holds all its recorded feeds (16 per crop,
with the whole key/value cache: about 5 GB at 24 crops of 256 px).

The quality floor: at the model's default temperature and texture (seeds 0, 1, 2 when T > 0),
int8 may lose at most 0.1 dB PSNR-Y and 0.005 LPIPS and DISTS against fp32 on each set (one-sided:
a better int8 number never fails). When it fails, the tool prints which number failed, removes
the int8 files, leaves the manifest without int8 and exits 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from larsr_cli.atomic import atomic_write
from larsr_cli.errors import LarsrError
from larsr_cli.integrity import sha256_of
from larsr_cli.manifest import GraphFile, Manifest, load_manifest, write_manifest
from larsr_cli.pipeline import Upscaler
from larsr_cli.precision import INT8
from larsr_cli.sessions import open_session

ALL_ROLES = ("coarse", "condition", "lar_step", "decoder")
DEFAULT_ROLES = ("coarse",)  # the one graph int8 made faster (module docstring)
SUFFIX = ".int8.onnx"
HR_CROP = 256
SCALE = 4
SEED = 0
# Largest loss int8 may cost against fp32 on each validation set (higher PSNR-Y, lower LPIPS and
# DISTS are better).
FLOOR = {"psnr_y": 0.1, "lpips": 0.005, "dists": 0.005}
SEEDS = (0, 1, 2)
# Only the ops int8 dot-product units speed up; the adds, concatenations, masks and activations
# between them stay fp32 (quantising those put the output image itself on an 8-bit grid, and the
# LAR step's -inf attention mask got an infinite scale).
QUANTISED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Recipe:
    """Which nodes int8 may take: these op types, and with ``only_under`` only the nodes whose
    name starts with it (everything else stays fp32). The default is the shipped recipe; the
    options are for probes such as the coarse net's RRDB body quantised end to end
    (``--ops Conv Concat LeakyRelu Add Mul --only-under /coarse/body/``), where the activations
    stay int8 from one convolution to the next instead of being converted around each one."""

    ops: tuple[str, ...] = QUANTISED_OPS
    only_under: str | None = None

    def takes(self, node: Any, weights: set[str]) -> bool:
        if node.op_type not in self.ops or (self.only_under and not node.name.startswith(self.only_under)):
            return False
        return node.op_type != "MatMul" or node.input[1] in weights  # MatMuls with a weight operand

    def to_json(self) -> dict[str, Any]:
        return {"ops": list(self.ops), "only_under": self.only_under}


# A node whose quantisation alone costs its graph's outputs this much more SNR than the median node
# does stays fp32 (``noisy_nodes``).
OUTLIER_DB = 10.0
PROBE_FEEDS = 8
FeedLog = dict[str, list[dict[str, np.ndarray]]]


# --------------------------------------------------------------------------------------------
# Calibration inputs


def calibration_crops(
    photos_dir: Path | str, count: int = 24, size: int = HR_CROP, seed: int = SEED
) -> list[np.ndarray]:
    """``count`` LR crops (float32 in [0, 1]) of ``size`` px HR crops from training photos larger
    than that, one per photo in a seeded order, degraded exactly as the validation sets are."""
    from .data import make_pair, prepared_photo, read_manifest, select

    entries = sorted(select(read_manifest(photos_dir), "train"), key=lambda e: str(e["name"]))
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for i in rng.permutation(len(entries)):
        img = prepared_photo(photos_dir, entries[int(i)])
        h, w = img.shape[:2]
        if min(h, w) <= size:
            continue
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        hr = img[y : y + size, x : x + size].astype(np.float32) / 255.0
        crops.append(make_pair(hr, SCALE)[0])
        if len(crops) == count:
            return crops
    raise FileNotFoundError(f"{photos_dir}: only {len(crops)} training photos larger than {size} px")


class _Recorder:
    """Stands in for one onnxruntime session: keeps a copy of every feed, then runs it."""

    # No IOBinding: the LAR step then feeds through ``run``, where every feed is seen.
    io_binding = None

    def __init__(self, session: Any, log: list[dict[str, np.ndarray]]) -> None:
        self.session, self.log = session, log

    def run(self, output_names: Any, feeds: dict[str, np.ndarray], *args: Any, **kwargs: Any) -> Any:
        self.log.append({name: np.array(value, copy=True) for name, value in feeds.items()})
        return self.session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def record_feeds(
    upscaler: Upscaler, lrs: Sequence[np.ndarray], roles: Sequence[str], seed: int = SEED
) -> FeedLog:
    """The inputs each role's graph receives while the fp32 ``upscaler`` upscales ``lrs`` at the
    model's default temperature (texture 1 when the default is 0, so the texture graphs run)."""
    texture = upscaler.default_texture or 1.0
    log: FeedLog = {role: [] for role in roles}
    originals = dict(upscaler.sessions)
    try:
        for role in roles:  # the architecture reads the shared dict on every call
            upscaler.sessions[role] = _Recorder(originals[role], log[role])
        for i, lr in enumerate(lrs):
            upscaler.upscale_array(lr, seed=seed + i, texture=texture, tile=0, out_dtype=np.float32)
    finally:
        upscaler.sessions.update(originals)
    return log


# --------------------------------------------------------------------------------------------
# Quantising one graph


def _stride(count: int, most: int = 16) -> int:
    """The largest chunk size up to ``most`` that divides ``count`` (onnxruntime insists)."""
    return max(d for d in range(1, min(most, count) + 1) if count % d == 0)


def _reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """A calibration reader over recorded feeds, in chunks (``set_range``) so that MinMax folds
    each chunk's ranges before the next: one holds every intermediate tensor of its feeds, and
    the lar_step log has 16 feeds per crop."""
    from onnxruntime.quantization import CalibrationDataReader

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(feeds))

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter(feeds[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    return Feeds()


def _quantize(
    pre: Path, out: Path, feeds: list[dict[str, np.ndarray]], cache: Path, recipe: Recipe, **kwargs: Any
) -> None:
    """One ``quantize_static`` call with the fixed recipe; ranges come from (or go to) ``cache``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(pre),
        str(out),
        _reader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=list(recipe.ops),
        calibration_cache_path=str(cache),
        # (CalibMaxIntermediateOutputs would bound memory too, but onnxruntime 1.32 drops the
        # ranges of the feeds it clears instead of merging them.)
        extra_options={"MatMulConstBOnly": True, "CalibStridedMinMax": _stride(len(feeds))},
        **kwargs,
    )


def _snr_db(session: Any, feeds: list[dict[str, np.ndarray]], reference: list[list[np.ndarray]]) -> float:
    """The worst output's signal-to-noise ratio against fp32 over the probe feeds, in dB."""
    signal = noise = None
    for feed, ref in zip(feeds, reference, strict=True):
        got = session.run(None, feed)
        s = np.array([np.sum(np.square(r, dtype=np.float64)) for r in ref])
        n = np.array([np.sum(np.square(g - r, dtype=np.float64)) for g, r in zip(got, ref, strict=True)])
        signal, noise = (s, n) if signal is None else (signal + s, noise + n)
    assert signal is not None and noise is not None
    return float(np.min(10 * np.log10(np.maximum(signal, 1e-30) / np.maximum(noise, 1e-30))))


def _partition(pre: Path, recipe: Recipe) -> tuple[list[str], list[str]]:
    """(nodes the recipe quantises, nodes of its op types that ``only_under`` keeps fp32); by
    default every Conv and Gemm and the MatMuls with a weight operand, and nothing left out."""
    import onnx

    graph = onnx.load(str(pre)).graph
    weights = {init.name for init in graph.initializer}
    mine = [n for n in graph.node if n.op_type in recipe.ops]
    taken = {n.name for n in mine if recipe.takes(n, weights)}
    return [n.name for n in mine if n.name in taken], [n.name for n in mine if n.name not in taken]


def node_snrs(
    pre: Path, feeds: list[dict[str, np.ndarray]], cache: Path, candidates: Sequence[str], recipe: Recipe
) -> dict[str, float]:
    """Each of ``candidates`` quantised alone: its graph's worst output SNR against fp32 (dB) on a
    few calibration feeds (training crops, never the validation sets)."""
    import onnxruntime as ort

    from larsr_cli.sessions import session_options

    probe = feeds[:: max(1, len(feeds) // PROBE_FEEDS)][:PROBE_FEEDS]
    fp32 = ort.InferenceSession(str(pre), session_options(None), providers=["CPUExecutionProvider"])
    reference = [fp32.run(None, feed) for feed in probe]
    snrs = {}
    one = cache.with_name("one.onnx")
    for name in candidates:
        _quantize(pre, one, feeds, cache, recipe, nodes_to_quantize=[name])
        session = ort.InferenceSession(str(one), session_options(None), providers=["CPUExecutionProvider"])
        snrs[name] = round(_snr_db(session, probe, reference), 1)
    return snrs


def noisy_nodes(snrs: dict[str, float]) -> dict[str, float]:
    """The outliers that stay fp32: nodes whose noise alone is OUTLIER_DB above the graph's
    median node. In a residual body each layer's noise is damped by the layers after it; the
    layers that write the picture itself (the coarse net's first, trunk, upsampling and last
    convolutions) are 10-25 dB noisier, and on the soft val set each of them alone cost
    0.02-0.08 dB PSNR-Y where a body convolution cost about 0.001."""
    if not snrs:
        return {}
    median = float(np.median(list(snrs.values())))
    return {name: snr for name, snr in snrs.items() if snr < median - OUTLIER_DB}


def _preprocess(src: Path, dst: Path, workdir: Path) -> None:
    """onnxruntime's quantisation pre-processing (symbolic shapes, optimisation, ONNX shapes),
    run as its own CLI in a child process whose working directory is ``workdir``: a failed
    symbolic inference saves its model (with external data files) into the current folder, and
    changing this process's folder instead would move every thread's relative paths with it.
    ``--auto_merge``: the graphs have symbolic H, W and patch counts that plain inference cannot join."""
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime.quantization.preprocess",
        "--input",
        str(src.resolve()),
        "--output",
        str(dst.resolve()),
        "--auto_merge",
    ]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise LarsrError(f"{src.name}: quantisation pre-processing failed: {last}")


def quantize_graph(
    src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], recipe: Recipe = Recipe()
) -> dict[str, Any]:
    """fp32 graph -> static QDQ int8 graph at ``dst`` (written atomically); returns what was
    quantised and which nodes stayed fp32 (with their SNR alone)."""
    import onnx

    if not feeds:
        raise LarsrError(f"{src.name}: no calibration inputs were recorded for it")
    with tempfile.TemporaryDirectory(prefix="larsr-quantize-") as tmp:
        pre, out, cache = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        _preprocess(src, pre, Path(tmp))
        candidates, left_out = _partition(pre, recipe)
        snrs = node_snrs(pre, feeds, cache, candidates, recipe)
        noisy = noisy_nodes(snrs)
        _quantize(pre, out, feeds, cache, recipe, nodes_to_exclude=[*noisy, *left_out])
        quantised = onnx.load(str(out))
        # The source's metadata (the step graph's cache-layout mark) does not survive quantize_static.
        onnx.helper.set_model_props(quantised, {p.key: p.value for p in onnx.load(str(src)).metadata_props})
        with atomic_write(dst, overwrite=True) as fh:
            fh.write(quantised.SerializeToString())
    median = float(np.median(list(snrs.values()))) if snrs else None
    return {"quantised_nodes": len(snrs) - len(noisy), "kept_fp32": noisy, "median_node_snr_db": median}


# --------------------------------------------------------------------------------------------
# The quality floor


def _set_means(upscaler: Upscaler, scorer: Any, images: list, temperature: float, texture: float) -> dict:
    from .metrics import psnr_y
    from .scoring import BORDER

    seeds = SEEDS if temperature > 0 else (0,)
    rows = []
    for _name, hr, lr in images:
        for s in seeds:
            sr = upscaler.upscale_array(lr, seed=s, temperature=temperature, texture=texture, tile=0)
            sr = sr.astype(np.float32) / 255.0  # scored as the 8-bit files users get
            rows.append(
                {
                    "psnr_y": float(psnr_y(sr, hr, border=BORDER)),
                    "lpips": scorer.lpips_dist(sr, hr),
                    "dists": scorer.dists_dist(sr, hr),
                }
            )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if rows[0][k] is not None}


def check_floor(
    folder: Path, int8_files: dict[str, Path], photos_dir: Path | str, log: Any = print
) -> tuple[dict[str, Any], list[str]]:
    """Scores fp32 and int8 on both validation sets; returns the metrics and the failures (one
    line each, empty when the floor holds)."""
    from .scoring import Scorer, load_set

    notes: list[str] = []
    scorer = Scorer(notes=notes)
    if scorer.lpips is None or scorer.dists is None:
        raise LarsrError(f"the quality floor needs LPIPS and DISTS: {'; '.join(notes)}")
    fp32 = Upscaler(folder, device="cpu", precision="fp32")
    int8 = Upscaler(folder, device="cpu", precision="fp32")
    for role, path in int8_files.items():  # the architecture reads the shared dict on every call
        int8.sessions[role] = open_session(path, int8.device, None, role in int8.arch.arena_roles)
    int8.precision = INT8
    temperature, texture = fp32.default_temperature, fp32.default_texture
    metrics: dict[str, Any] = {
        "temperature": temperature,
        "texture": texture,
        "seeds": list(SEEDS if temperature > 0 else (0,)),
        "floor": dict(FLOOR),
    }
    failures = []
    for which in ("val", "detail"):
        images = load_set(photos_dir, which)
        started = time.perf_counter()
        a = _set_means(fp32, scorer, images, temperature, texture)
        b = _set_means(int8, scorer, images, temperature, texture)
        delta = {k: b[k] - a[k] for k in FLOOR}
        metrics[which] = {"images": len(images), "fp32": a, "int8": b, "delta": delta}
        for key, bound in FLOOR.items():
            loss = -delta[key] if key == "psnr_y" else delta[key]
            if loss > bound:
                failures.append(
                    f"{which} set: {key} {a[key]:.4f} (fp32) -> {b[key]:.4f} (int8), "
                    f"a loss of {loss:.4f}, more than the floor's {bound:g}"
                )
        log(
            f"{which} ({len(images)} images, {time.perf_counter() - started:.0f} s): "
            + ", ".join(f"{k} {a[k]:.4f} -> {b[k]:.4f} ({delta[k]:+.4f})" for k in FLOOR)
        )
    return metrics, failures


# --------------------------------------------------------------------------------------------
# The model folder


def _without_int8(manifest: Manifest) -> Manifest:
    return replace(manifest, precisions={k: v for k, v in manifest.precisions.items() if k != INT8})


def quantize_model(
    folder: Path | str,
    lrs: Sequence[np.ndarray],
    roles: Sequence[str] = DEFAULT_ROLES,
    *,
    photos_dir: Path | str | None = None,
    check: bool = True,
    calibration: dict[str, Any] | None = None,
    recipe: Recipe = Recipe(),
    log: Any = print,
) -> Manifest:
    """Quantise ``roles`` of the model in ``folder`` on calibration LR arrays ``lrs`` (HxWx3 float
    in [0, 1]) and list the int8 graphs in its manifest; returns the new manifest.

    ``check`` scores the result against fp32 on the validation sets of ``photos_dir`` and refuses
    it (``LarsrError`` naming the failed numbers; the int8 files removed) below the floor.
    ``check=False`` skips that (tests, which have no photos): the metrics then say so.
    """
    folder = Path(folder)
    manifest = load_manifest(folder)  # verifies the fp32 graphs the int8 ones are made from
    unknown = [r for r in roles if r not in manifest.graphs]
    if unknown or not roles:
        raise LarsrError(f"--roles: expected some of {', '.join(manifest.graphs)}, got {', '.join(roles)}")
    if check and photos_dir is None:
        raise LarsrError("the quality floor needs the photos (photos_dir / --data)")
    started = time.perf_counter()
    upscaler = Upscaler(folder, device="cpu", precision="fp32")
    feeds = record_feeds(upscaler, lrs, roles)
    log(f"recorded calibration inputs: {', '.join(f'{r} {len(feeds[r])}' for r in roles)}")
    # An earlier int8 variant is unlisted and removed first: its files are about to be replaced.
    base = _without_int8(manifest)
    if base != manifest:
        write_manifest(folder, base)
        for graph in manifest.precisions[INT8].values():
            (folder / graph.file).unlink(missing_ok=True)
    targets = {role: folder / f"{Path(manifest.graphs[role].file).stem}{SUFFIX}" for role in roles}
    graphs: dict[str, Any] = {}
    try:
        for role, dst in targets.items():
            t0 = time.perf_counter()
            src = folder / manifest.graphs[role].file
            graphs[role] = quantize_graph(src, dst, feeds.pop(role), recipe)
            kept = ", ".join(graphs[role]["kept_fp32"]) or "none"
            log(
                f"{dst.name}: {graphs[role]['quantised_nodes']} nodes int8, kept fp32: {kept} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        if check:
            assert photos_dir is not None
            metrics, failures = check_floor(folder, targets, photos_dir, log)
            if failures:
                raise LarsrError("int8 fails the quality floor: " + "; ".join(failures))
        else:
            metrics = {"floor": "not checked"}
    except BaseException:
        for path in targets.values():
            path.unlink(missing_ok=True)
        raise
    metrics["roles"] = list(roles)
    metrics["recipe"] = recipe.to_json()
    metrics["graphs"] = graphs
    metrics["calibration"] = calibration or {"crops": len(lrs), "source": "arrays given by the caller"}
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    variant = {role: GraphFile(p.name, sha256_of(p), p.stat().st_size) for role, p in targets.items()}
    done = replace(
        base,
        precisions={**base.precisions, INT8: variant},
        metrics={**base.metrics, INT8: metrics},
    )
    write_manifest(folder, done)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="model folder (manifest.json and graphs)")
    p.add_argument("--data", type=Path, default=Path("data/photos"), help="photos folder (export.data)")
    p.add_argument("--roles", nargs="+", default=list(DEFAULT_ROLES), choices=ALL_ROLES)
    p.add_argument("--crops", type=int, default=24, help="training crops to calibrate on")
    p.add_argument("--ops", nargs="+", default=list(QUANTISED_OPS), help="op types int8 may take")
    p.add_argument("--only-under", help="quantise only the nodes named with this prefix (/coarse/body/)")
    args = p.parse_args(argv)
    recipe = Recipe(tuple(args.ops), args.only_under)
    started = time.perf_counter()
    try:
        lrs = calibration_crops(args.data, args.crops)
        import onnxruntime

        calibration = {
            "source": f"training split of {args.data}",
            "crops": len(lrs),
            "hr_size": HR_CROP,
            "seed": SEED,
            "method": "MinMax",
            "format": "QDQ, uint8 activations, int8 weights per channel, MatMulConstBOnly",
            "onnxruntime": onnxruntime.__version__,
        }
        manifest = quantize_model(
            args.model, lrs, args.roles, photos_dir=args.data, calibration=calibration, recipe=recipe
        )
    except (LarsrError, FileNotFoundError) as exc:
        print(f"export.quantize: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(manifest.metrics[INT8], indent=2))
    print(
        f"int8 variant of {', '.join(args.roles)} listed in {args.model}/manifest.json "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
