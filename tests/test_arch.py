"""The architecture seam: manifest v2 (and v1 folders), the registry, the sampler object and its
step hook, and the speed harness that times stages through those public seams.

All on the tiny randomly initialised model of conftest.py with real onnxruntime sessions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.speed import TimedSampler, instrumented
from larsr_cli.arch import ARCHITECTURES, Architecture, ArchSpec, LarSR, get_architecture, register
from larsr_cli.errors import ModelError
from larsr_cli.manifest import FORMAT_VERSION, load_manifest, read_manifest
from larsr_cli.pipeline import Upscaler
from larsr_cli.sampler import ArgmaxSampler, Sampler, Step, TemperatureSampler, TileDraw, resolve_sampler

H, W = 24, 32


@pytest.fixture(scope="module")
def upscaler(tiny_model_dir: Path) -> Upscaler:
    return Upscaler(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    return np.random.default_rng(5).random((H, W, 3), dtype=np.float32)


def as_v1(v2: dict) -> dict:
    """The format-1 manifest the previous exporter wrote for the same graphs."""
    spec = v2["spec"]
    return {
        "format_version": 1,
        "name": v2["name"],
        "scale": v2["scale"],
        "patch_size": spec["patch_size"],
        "codebook_size": spec["codebook_size"],
        "tile_multiple": v2["tile_multiple"],
        "receptive_field": v2["receptive_field"],
        "default_temperature": spec["default_temperature"],
        "lar": {k: spec[k] for k in ("layers", "heads", "features", "index_stride")},
        "config": v2["config"],
        "files": {g["file"]: {"sha256": g["sha256"], "bytes": g["bytes"]} for g in v2["graphs"].values()},
    }


# ---- manifest v2 ---------------------------------------------------------------------------------


def test_exporter_writes_v2_with_architecture_and_graph_roles(tiny_model_dir: Path) -> None:
    data = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert data["format_version"] == FORMAT_VERSION == 2
    assert data["architecture"] == "lar-sr"
    assert set(data["graphs"]) == set(LarSR.graph_roles)
    for graph in data["graphs"].values():
        assert (tiny_model_dir / graph["file"]).stat().st_size == graph["bytes"]
    manifest = load_manifest(tiny_model_dir)
    assert manifest.architecture_class is LarSR
    assert manifest.spec.patch_size == manifest.config["patch_size"]


def test_v1_folder_still_loads_and_upscales_the_same(
    tiny_model_dir: Path, tmp_path: Path, upscaler: Upscaler, lr: np.ndarray
) -> None:
    old = tmp_path / "v1"
    shutil.copytree(tiny_model_dir, old)
    v2 = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps(as_v1(v2)))
    manifest = load_manifest(old)
    assert manifest.format_version == 1 and manifest.architecture == "lar-sr"
    assert manifest.spec == upscaler.manifest.spec
    assert manifest.files == upscaler.manifest.files
    legacy = Upscaler(old, device="cpu")
    assert np.array_equal(legacy.upscale_array(lr, seed=3), upscaler.upscale_array(lr, seed=3))


def test_v1_shipped_model_reads(tmp_path: Path) -> None:
    """Whatever format the shipped folder has, it reads as lar-sr with a four-graph spec."""
    manifest = read_manifest(Path(__file__).resolve().parents[1] / "models" / "larsr-x4")
    assert manifest.architecture == "lar-sr" and len(manifest.graphs) == 4


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(architecture="esrgan"), "unknown architecture 'esrgan'"),
        (lambda d: d.pop("architecture"), "lacks architecture"),
        (lambda d: d["graphs"].pop("decoder"), "graphs lack decoder"),
        (lambda d: d["graphs"]["coarse"].update(file="../coarse.onnx"), "plain file name"),
        (lambda d: d["graphs"]["coarse"].update(file=d["graphs"]["decoder"]["file"]), "different file"),
        (lambda d: d["spec"].update(heads=5), "multiple of spec.heads"),
        (lambda d: d["spec"].update(patch_size="four"), "spec.patch_size must be an integer"),
        (lambda d: d["spec"].update(codes_per_step=3), "codes_per_step .3. must divide the 16 positions"),
        (lambda d: d.update(spec=[]), "spec must be an object"),
        (lambda d: d.update(format_version=3), "format_version 3"),
    ],
)
def test_malformed_v2_manifests_are_one_line_errors(
    tiny_model_dir: Path, tmp_path: Path, change, message: str
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    data = json.loads((bad / "manifest.json").read_text())
    change(data)
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message) as info:
        load_manifest(bad)
    assert "\n" not in str(info.value)


# ---- registry ------------------------------------------------------------------------------------


def test_registry_knows_lar_sr_and_refuses_a_clash() -> None:
    assert get_architecture("lar-sr") is LarSR is ARCHITECTURES["lar-sr"]
    with pytest.raises(ModelError, match="knows lar-sr"):
        get_architecture("nope")

    class Impostor(LarSR):
        id = "lar-sr"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)


def test_a_new_architecture_plugs_in_without_touching_the_upscaler(
    tiny_model_dir: Path, tmp_path: Path, lr: np.ndarray
) -> None:
    """A regression-only family that uses just the coarse graph: one class, one register call."""

    class CoarseOnly(Architecture):
        id = "test-coarse-only"
        graph_roles = ("coarse",)
        stages = ("coarse",)

        @classmethod
        def parse_spec(cls, data, where):
            return ArchSpec()

        def structure(self, lr_tile):
            return self.sessions["coarse"].run(None, {"lr": lr_tile})[0]

        def steps(self, texture):
            return 1

        def render_tile(self, lr_tile, context, sampler, texture, on_step=None):
            return self.structure(lr_tile)

        def bytes_per_lr_pixel(self):
            return 4096

    register(CoarseOnly)
    try:
        folder = tmp_path / "coarse-only"
        folder.mkdir()
        data = json.loads((tiny_model_dir / "manifest.json").read_text())
        shutil.copy(tiny_model_dir / data["graphs"]["coarse"]["file"], folder / "regress.onnx")
        data.update(
            architecture=CoarseOnly.id,
            graphs={"coarse": {**data["graphs"]["coarse"], "file": "regress.onnx"}},
            spec={},
        )
        (folder / "manifest.json").write_text(json.dumps(data))
        model = Upscaler(folder, device="cpu")
        assert set(model.sessions) == {"coarse"}
        out = model.upscale_array(lr, out_dtype=np.float32, tile=16)
        assert out.shape == (4 * H, 4 * W, 3)
        assert np.abs(out - model.coarse_array(lr)).max() < 1e-5  # tiled == untiled for it too
        assert model.default_temperature == 0.0
    finally:
        ARCHITECTURES.pop(CoarseOnly.id)


# ---- sampler object and step hook ----------------------------------------------------------------


def test_resolve_sampler_decides_noise_in_one_place() -> None:
    assert isinstance(resolve_sampler(0.0, 5), ArgmaxSampler)
    hot = resolve_sampler(0.7, 5)
    assert isinstance(hot, TemperatureSampler) and hot.stochastic and hot.temperature == 0.7
    assert not resolve_sampler(0.0, 5).stochastic
    with pytest.raises(ValueError):
        TemperatureSampler(0.0, 1)


def test_passing_the_resolved_sampler_equals_temperature_and_seed(upscaler: Upscaler, lr: np.ndarray) -> None:
    by_knobs = upscaler.upscale_array(lr, seed=9, temperature=0.9)
    by_object = upscaler.upscale_array(lr, sampler=resolve_sampler(0.9, 9))
    assert np.array_equal(by_knobs, by_object)


def test_a_custom_sampler_changes_the_codes(upscaler: Upscaler, lr: np.ndarray) -> None:
    """Swapping the sampler is the whole job of adding a sampling rule."""

    class LeastLikely(Sampler):
        def tile(self, index_box, patch_size) -> TileDraw:
            return lambda logits, positions: logits.argmin(axis=-1)

    argmax = upscaler.upscale_array(lr, temperature=0)
    odd = upscaler.upscale_array(lr, sampler=LeastLikely())
    assert not np.array_equal(argmax, odd)


def test_on_step_hears_every_step_of_every_tile(upscaler: Upscaler, lr: np.ndarray) -> None:
    heard: list[Step] = []
    upscaler.upscale_array(lr, seed=1, tile=16, on_step=heard.append)
    tiles = len(upscaler.plan(H, W, 16))
    positions = upscaler.manifest.spec.tokens
    assert len(heard) == tiles * positions
    assert [s.done for s in heard] == list(range(1, tiles * positions + 1))
    assert {s.total for s in heard} == {tiles * positions}
    assert [s.step for s in heard[:positions]] == list(range(1, positions + 1))
    # Without texture there are no LAR steps, but progress still moves once per tile.
    clean: list[Step] = []
    upscaler.upscale_array(lr, texture=0, tile=16, on_step=clean.append)
    assert [(s.tile, s.step, s.steps) for s in clean] == [(i, 1, 1) for i in range(tiles)]


# ---- the speed harness uses the public seams -----------------------------------------------------


def test_speed_harness_times_every_stage_without_changing_pixels(upscaler: Upscaler, lr: np.ndarray) -> None:
    plain = upscaler.upscale_array(lr, seed=0, temperature=1.0)
    with instrumented(upscaler) as (tally, counts):
        timed = upscaler.upscale_array(lr, sampler=TimedSampler(resolve_sampler(1.0, 0), tally))
    assert np.array_equal(plain, timed)
    positions = upscaler.manifest.spec.tokens
    assert counts["lar_step"] == positions and counts["coarse"] == counts["decoder"] == 1
    assert all(tally[k] > 0 for k in ("coarse", "condition", "lar_step", "decoder", "sampling"))
    # The proxies are gone afterwards: the architecture reads the real sessions again.
    assert all(type(s).__name__ == "InferenceSession" for s in upscaler.sessions.values())
    assert upscaler.arch.sessions is upscaler.sessions
