"""The int8 path end to end on the tiny model: ``export.quantize`` -> manifest -> ``--precision``.

The int8 model is the tiny model quantised on a few random crops (``int8_model_dir``); the
quality floor needs the photo data and is skipped there, so what is tested is what a user
notices: the files verify, a tampered one is refused, int8 pictures are close to fp32 but really
come from other graphs, seeds and tiles stay exact, and ``auto`` picks what the CPU can run fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import psnr
from PIL import Image

from export.quantize import ALL_ROLES
from larsr_cli.cli import main
from larsr_cli.errors import LarsrError, ModelError
from larsr_cli.manifest import load_manifest, parse_manifest, read_manifest
from larsr_cli.pipeline import Upscaler
from larsr_cli.precision import read_cpu_flags, resolve_precision

VNNI = lambda: {"fpu", "avx2", "avx512_vnni"}  # noqa: E731
NO_VNNI = lambda: {"fpu", "avx2"}  # noqa: E731


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    return np.random.default_rng(3).random((24, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def int8(int8_model_dir: Path) -> Upscaler:
    return Upscaler(int8_model_dir, device="cpu", precision="int8")


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8-in") / "in.png"
    rgb = np.random.default_rng(5).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def upscale(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["upscale", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("larsr: error:")]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ---- the quantiser's output ---------------------------------------------------------------------


def test_quantised_model_lists_its_int8_graphs_and_verifies(int8_model_dir: Path) -> None:
    manifest = load_manifest(int8_model_dir)  # raises on any sha256 mismatch, int8 files included
    variant = manifest.precisions["int8"]
    assert tuple(variant) == ALL_ROLES
    for role, graph in variant.items():
        assert graph.file == f"{role}.int8.onnx" and (int8_model_dir / graph.file).is_file()
        assert graph.file in manifest.files
    assert manifest.precision_names == ["fp32", "int8"]
    assert manifest.metrics["int8"]["floor"] == "not checked"
    assert manifest.metrics["int8"]["roles"] == list(ALL_ROLES)
    # what `larsr info --verify` shows a user
    result = CliRunner().invoke(main, ["info", str(int8_model_dir), "--verify"])
    assert result.exit_code == 0, result.output
    assert result.output.count("verified") == len(manifest.files)
    [row] = [line for line in result.output.splitlines() if line.startswith("Precisions")]
    assert "fp32, int8" in row


def test_a_tampered_int8_graph_is_refused_with_one_line(int8_model_dir: Path, tmp_path: Path, photo) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(int8_model_dir, bad)
    with open(bad / "coarse.int8.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match=r"coarse\.int8\.onnx: sha256 mismatch"):
        Upscaler(bad, device="cpu", precision="int8")
    code, _, err = upscale(photo, "-o", tmp_path / "out.png", "--model", bad, "--precision", "int8")
    assert code == 1
    [line] = error_lines(err)
    assert "coarse.int8.onnx: sha256 mismatch" in line
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


# ---- pictures -----------------------------------------------------------------------------------


def test_int8_pictures_are_close_to_fp32_but_come_from_other_graphs(int8_model_dir, photo, tmp_path) -> None:
    outs = {}
    for precision in ("fp32", "int8"):
        out = tmp_path / f"{precision}.png"
        code, _, err = upscale(photo, "-o", out, "--model", int8_model_dir, "--precision", precision)
        assert code == 0, err
        outs[precision] = pixels(out)
    assert outs["int8"].shape == outs["fp32"].shape
    assert not np.array_equal(outs["int8"], outs["fp32"])
    assert psnr(outs["int8"], outs["fp32"], peak=255.0) > 25


def test_int8_tiles_are_exact(int8: Upscaler) -> None:
    rgb = np.random.default_rng(7).random((24, 32, 3), dtype=np.float32)
    whole = int8.upscale_array(rgb, seed=11, temperature=1.0, tile=0)
    assert len(int8.plan(24, 32, 16)) >= 2
    assert np.array_equal(int8.upscale_array(rgb, seed=11, temperature=1.0, tile=16), whole)


def test_int8_same_seed_same_picture(int8: Upscaler, lr: np.ndarray) -> None:
    a = int8.upscale_array(lr, seed=4, temperature=1.0)
    assert np.array_equal(a, int8.upscale_array(lr, seed=4, temperature=1.0))
    assert not np.array_equal(a, int8.upscale_array(lr, seed=5, temperature=1.0))


# ---- choosing the precision ---------------------------------------------------------------------


def test_int8_on_a_model_without_int8_graphs_is_one_line(tiny_model_dir, photo, tmp_path) -> None:
    with pytest.raises(LarsrError, match="--precision fp32"):
        Upscaler(tiny_model_dir, device="cpu", precision="int8")
    code, _, err = upscale(
        photo, "-o", tmp_path / "out.png", "--model", tiny_model_dir, "--precision", "int8"
    )
    assert code == 1
    [line] = error_lines(err)
    name = read_manifest(tiny_model_dir).name
    assert f"model {name} ships no int8 graphs" in line and "--precision fp32" in line
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


def test_auto_is_int8_only_with_int8_graphs_and_int8_dot_products(int8_model_dir, tiny_model_dir) -> None:
    assert Upscaler(int8_model_dir, device="cpu", cpu_flags=VNNI).precision == "int8"
    for flag in ("avx_vnni", "amx_int8"):
        assert Upscaler(int8_model_dir, device="cpu", cpu_flags=lambda f=flag: {f}).precision == "int8"
    assert Upscaler(int8_model_dir, device="cpu", cpu_flags=NO_VNNI).precision == "fp32"
    assert Upscaler(tiny_model_dir, device="cpu", cpu_flags=VNNI).precision == "fp32"
    assert Upscaler(int8_model_dir, device="cpu", precision="fp32", cpu_flags=VNNI).precision == "fp32"
    # a GPU stays fp32 on auto whatever the host CPU has
    manifest = read_manifest(int8_model_dir)
    assert resolve_precision("auto", manifest, "cuda:0", VNNI) == "fp32"
    assert resolve_precision("int8", manifest, "cuda:0", NO_VNNI) == "int8"  # asked for: honoured


def test_auto_without_vnni_gives_exactly_the_fp32_picture(int8_model_dir, lr) -> None:
    auto = Upscaler(int8_model_dir, device="cpu", cpu_flags=NO_VNNI)
    fp32 = Upscaler(int8_model_dir, device="cpu", precision="fp32")
    int8 = Upscaler(int8_model_dir, device="cpu", cpu_flags=VNNI)
    a = auto.upscale_array(lr, seed=1)
    assert np.array_equal(a, fp32.upscale_array(lr, seed=1))
    assert not np.array_equal(a, int8.upscale_array(lr, seed=1))


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch) -> None:
    import larsr_cli.precision as precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_vnni\n\nprocessor\t: 1\nflags\t: fpu\n")
    monkeypatch.setattr(precision, "CPUINFO", info)
    monkeypatch.setattr(precision.sys, "platform", "linux")
    read_cpu_flags.cache_clear()
    try:
        assert {"fpu", "sse2", "avx512_vnni"} <= read_cpu_flags()
        monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
        read_cpu_flags.cache_clear()
        assert read_cpu_flags() == frozenset()  # unreadable: no flags, so auto stays fp32
        monkeypatch.setattr(precision.sys, "platform", "darwin")
        read_cpu_flags.cache_clear()
        assert read_cpu_flags() == frozenset()
    finally:
        read_cpu_flags.cache_clear()


@pytest.mark.parametrize(
    ("model", "precision", "expected"),
    [("int8", "int8", "int8"), ("int8", "fp32", "fp32"), ("fp32", "auto", "fp32")],
)
def test_the_report_records_the_precision_used(
    int8_model_dir, tiny_model_dir, photo, tmp_path, model, precision, expected
) -> None:
    folder = int8_model_dir if model == "int8" else tiny_model_dir
    code, stdout, err = upscale(
        photo, "-o", tmp_path / "out.png", "--model", folder, "--precision", precision, "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["precision"] == expected


def test_precision_is_in_the_speed_section_of_the_help() -> None:
    text = CliRunner().invoke(main, ["upscale", "--help"]).output
    section = text.split("Speed and memory:")[1].split("\n\n")[0]
    assert "--precision [auto|fp32|int8]" in section


# ---- the manifest field -------------------------------------------------------------------------


def _manifest_json(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_a_manifest_without_precisions_reads_and_writes_as_before(tiny_model_dir) -> None:
    data = _manifest_json(tiny_model_dir)
    assert "precisions" not in data
    manifest = parse_manifest(data)
    assert manifest.precisions == {} and manifest.precision_names == ["fp32"]
    assert "precisions" not in manifest.to_json()


def test_precisions_round_trip(int8_model_dir) -> None:
    data = _manifest_json(int8_model_dir)
    assert parse_manifest(data).to_json()["precisions"] == data["precisions"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["int8"].update(upscale={**p["int8"]["coarse"]}), "unknown roles upscale"),
        (lambda p: p["int8"]["coarse"].update(file="coarse.onnx"), "reuses the file name coarse.onnx"),
        (lambda p: p["int8"]["decoder"].update(file="coarse.int8.onnx"), "reuses the file name"),
        (lambda p: p["int8"]["coarse"].update(file="../coarse.int8.onnx"), "plain file name"),
        (lambda p: p["int8"]["coarse"].update(sha256="0" * 12), "64 lowercase hex digits"),
        (lambda p: p.update(fp32=p.pop("int8")), "other than fp32"),
        (lambda p: p.update(int8=[]), "precisions must map"),
    ],
    ids=["unknown-role", "fp32-file", "duplicate", "path", "sha256", "fp32-name", "not-object"],
)
def test_bad_precisions_are_one_line(int8_model_dir, change, message) -> None:
    data = _manifest_json(int8_model_dir)
    change(data["precisions"])
    with pytest.raises(ModelError, match=message):
        parse_manifest(data, where="m.json")


# ---- the quantiser's refusals -------------------------------------------------------------------


def _calibration_crops(*_args: object) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((16, 16, 3), dtype=np.float32) for _ in range(2)]


def test_a_model_below_the_floor_keeps_no_int8(int8_model_dir, tmp_path, monkeypatch, capsys) -> None:
    """The floor needs the photos, so its verdict is stubbed; what is tested is what the tool does
    with a failure: one line naming the number, no int8 files, no int8 in the manifest, exit 1."""
    import export.quantize as quantize

    folder = tmp_path / "model"
    shutil.copytree(int8_model_dir, folder)  # it ships int8 already: a re-run replaces that
    failure = "val set: psnr_y 35.0000 (fp32) -> 34.5000 (int8), a loss of 0.5000, more than the floor's 0.1"
    monkeypatch.setattr(quantize, "calibration_crops", _calibration_crops)
    monkeypatch.setattr(quantize, "check_floor", lambda *_a, **_k: ({}, [failure]))
    assert quantize.main(["--model", str(folder), "--data", str(tmp_path / "photos")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8 fails the quality floor" in err[0] and failure in err[0]
    assert sorted(p.name for p in folder.glob("*.int8.onnx")) == []
    manifest = load_manifest(folder)
    assert manifest.precisions == {} and "int8" not in _manifest_json(folder)
    assert Upscaler(folder, device="cpu", cpu_flags=VNNI).precision == "fp32"


def test_a_rerun_replaces_the_int8_variant(int8_model_dir, tmp_path, monkeypatch, capsys) -> None:
    import export.quantize as quantize

    folder = tmp_path / "model"
    shutil.copytree(int8_model_dir, folder)
    monkeypatch.setattr(quantize, "calibration_crops", _calibration_crops)
    monkeypatch.setattr(quantize, "check_floor", lambda *_a, **_k: ({"floor": "stubbed"}, []))
    assert quantize.main(["--model", str(folder), "--data", str(tmp_path / "photos")]) == 0
    manifest = load_manifest(folder)
    assert list(manifest.precisions["int8"]) == list(quantize.DEFAULT_ROLES)
    # the old variant's other files are gone, not left unlisted beside the model
    assert sorted(p.name for p in folder.glob("*.int8.onnx")) == [
        f"{role}.int8.onnx" for role in sorted(quantize.DEFAULT_ROLES)
    ]
    assert manifest.metrics["int8"]["calibration"]["crops"] == 2
    assert "listed in" in capsys.readouterr().out


def test_a_graph_quantisation_cannot_read_is_one_line_and_leaves_the_folders_alone(
    tmp_path: Path, monkeypatch
) -> None:
    """Pre-processing runs in a child process inside a temporary folder: a graph it cannot read
    fails with one line naming the graph, the caller's folder keeps its working directory and gets
    no stray model files, and no int8 file is written."""
    from export.quantize import quantize_graph

    src = tmp_path / "coarse.onnx"
    src.write_bytes(b"not an onnx graph")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    dst = tmp_path / "coarse.int8.onnx"
    with pytest.raises(LarsrError, match=r"^coarse\.onnx: quantisation pre-processing failed: ") as caught:
        quantize_graph(src, dst, [{"lr": np.zeros((1, 3, 8, 8), np.float32)}])
    assert "\n" not in str(caught.value)
    assert Path.cwd() == here and list(here.iterdir()) == []
    assert not dst.exists()


def _optimised_ops(path: Path, tmp_path: Path) -> dict[str, int]:
    """Op counts of the graph onnxruntime actually runs: its optimiser fuses each int8 node's
    dequantise -> op -> quantise into one QLinear op, so these say what int8 took."""
    from collections import Counter

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node))


def test_a_recipe_chooses_the_op_types_and_the_part_of_the_graph_int8_takes(tmp_path: Path) -> None:
    """The shipped recipe takes convolutions, with float activations between them; ``--ops Conv
    Concat LeakyRelu Add Mul --only-under /coarse/body/`` keeps the body's activations int8 from
    one convolution to the next and leaves the convolutions outside the body fp32. On the shipped
    coarse graph: the tiny test model's random weights leave too few nodes below the outlier rule."""
    import onnx

    from export.quantize import Recipe, quantize_graph

    rng = np.random.default_rng(0)
    feeds = [{"lr": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(3)]
    src = Path(__file__).resolve().parents[1] / "models" / "larsr-x4" / "coarse.onnx"
    plain, body = tmp_path / "plain.int8.onnx", tmp_path / "body.int8.onnx"
    quantize_graph(src, plain, feeds)
    quantize_graph(src, body, feeds, Recipe(("Conv", "Concat", "LeakyRelu", "Add", "Mul"), "/coarse/body/"))
    ops_plain, ops_body = _optimised_ops(plain, tmp_path), _optimised_ops(body, tmp_path)
    assert ops_plain.get("QLinearConv", 0) > 0 and ops_plain.get("QLinearLeakyRelu", 0) == 0
    assert ops_body.get("QLinearLeakyRelu", 0) > 0
    assert ops_body.get("QLinearConcat", 0) > ops_plain.get("QLinearConcat", 0)
    assert ops_body.get("DequantizeLinear", 0) < ops_plain.get("DequantizeLinear", 0)
    nodes = onnx.load(str(src)).graph.node
    outside = [n for n in nodes if n.op_type == "Conv" and not n.name.startswith("/coarse/body/")]
    assert outside and ops_body.get("Conv", 0) + ops_body.get("FusedConv", 0) >= len(outside)
