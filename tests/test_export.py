"""The exported ONNX graphs compute what the PyTorch networks compute.

Everything the runtime does rests on these graphs, so each one is compared with PyTorch on random
inputs of two different sizes (dynamic height/width must really be dynamic), the LAR module is
checked to be causal, and the cached step must reproduce the teacher-forced forward pass.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from larsr_cli.errors import ModelError
from larsr_cli.integrity import sha256_of
from larsr_cli.manifest import load_manifest

SIZES = [(12, 20), (26, 18)]  # LR (h, w): even sides, different aspect ratios
TOL = 1e-4


@pytest.fixture(scope="module")
def sessions(tiny_model_dir):
    names = ["coarse", "condition", "lar_step", "decoder", "lar_full"]
    return {
        n: ort.InferenceSession(str(tiny_model_dir / f"{n}.onnx"), providers=["CPUExecutionProvider"])
        for n in names
    }


def _max_diff(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.abs(a - b.detach().numpy()).max())


@pytest.mark.parametrize("h,w", SIZES)
def test_coarse_condition_decoder_match_torch(sessions, tiny_torch_model, h, w):
    m = tiny_torch_model
    torch.manual_seed(h * w)
    lr = torch.rand(1, 3, h, w)
    with torch.no_grad():
        xc = m.coarse(lr)
        cond, start = m.lar.condition(xc)
        idx = torch.randint(0, m.cfg.codebook_size, (1, 2 * h, 2 * w))
        sr = m.vqvae.decode(idx, xc)
    (xc_onnx,) = sessions["coarse"].run(None, {"lr": lr.numpy()})
    assert xc_onnx.shape == (1, 3, 4 * h, 4 * w)
    assert _max_diff(xc_onnx, xc) < TOL
    cond_onnx, start_onnx = sessions["condition"].run(None, {"xc": xc.numpy()})
    assert _max_diff(cond_onnx, cond) < TOL and _max_diff(start_onnx, start) < TOL
    (sr_onnx,) = sessions["decoder"].run(None, {"indices": idx.numpy(), "xc": xc.numpy()})
    assert _max_diff(sr_onnx, sr) < TOL


@pytest.fixture(scope="module")
def base_shaped(tmp_path_factory):
    """The tiny model with the 'base' config's structural switches: condition U-Net on the LR grid,
    phase channels and the LR back-projection in the VQ-VAE, exported once."""
    from export.configs import get_config
    from export.model import LarsrModel
    from export.to_onnx import export_model

    torch.manual_seed(1)
    cfg = get_config("tiny").with_overrides(cond_stride=4, vq_phase=True, vq_lr_project=2)
    model = LarsrModel(cfg).eval()
    out = tmp_path_factory.mktemp("models") / "tiny-base-shaped"
    export_model(model, out, "tiny-base-shaped")
    return model, out


@pytest.mark.parametrize("h,w", SIZES)
def test_lr_grid_condition_and_phase_decoder_match_torch(base_shaped, h, w):
    model, folder = base_shaped
    cond_s = ort.InferenceSession(str(folder / "condition.onnx"), providers=["CPUExecutionProvider"])
    dec_s = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    torch.manual_seed(h * w + 1)
    xc = torch.rand(1, 3, 4 * h, 4 * w)
    idx = torch.randint(0, model.cfg.codebook_size, (1, 2 * h, 2 * w))
    with torch.no_grad():
        cond, start = model.lar.condition(xc)
        sr = model.vqvae.decode(idx, xc)
    cond_onnx, start_onnx = cond_s.run(None, {"xc": xc.numpy()})
    assert cond_onnx.shape == tuple(cond.shape) == (1, h // 2, w // 2, 16, model.cfg.lar_features)
    assert _max_diff(cond_onnx, cond) < TOL and _max_diff(start_onnx, start) < TOL
    (sr_onnx,) = dec_s.run(None, {"indices": idx.numpy(), "xc": xc.numpy()})
    assert _max_diff(sr_onnx, sr) < TOL


def test_phase_channels_make_the_decoder_depend_on_the_cell_phase(base_shaped):
    """The same code and coarse image decode differently at the two columns of an LR pixel; a
    one-cell shift of the whole map moves that phase, so the pixels are not a plain shift."""
    model, _ = base_shaped
    xc = torch.full((1, 3, 16, 16), 0.5)
    idx = torch.zeros(1, 8, 8, dtype=torch.long)
    with torch.no_grad():
        sr = model.vqvae.decode(idx, xc)[0]
    even, odd = sr[:, 4:12, 4:6], sr[:, 4:12, 6:8]  # columns of cells 2 and 3
    assert float((even - odd).abs().max()) > 1e-4


def test_back_projected_texture_all_but_vanishes_in_the_lr_image():
    """The LR-visible part of the residual is what the runtime's LR-consistency score measures
    (export.degrade's PIL bicubic): the projection's own downscale must be that operator, and
    two steps must remove most of it while keeping most of the texture."""
    from export.degrade import bicubic_downscale
    from export.networks.consistency import LRProjection

    r = np.random.default_rng(5).standard_normal((64, 64, 3)).astype(np.float32)
    t = torch.tensor(r).permute(2, 0, 1)[None]
    lr_part = LRProjection(4, 1).lr_part(t)[0].permute(1, 2, 0).numpy()
    assert np.abs(lr_part - bicubic_downscale(r))[3:-3, 3:-3].max() < 1e-5
    projected = LRProjection(4, 2)(t)[0].permute(1, 2, 0).numpy()
    seen_before = np.sqrt((bicubic_downscale(r)[3:-3, 3:-3] ** 2).mean())
    seen_after = np.sqrt((bicubic_downscale(projected)[3:-3, 3:-3] ** 2).mean())
    assert seen_after < 0.25 * seen_before
    assert np.sqrt((projected**2).mean()) > 0.9 * np.sqrt((r**2).mean())


@pytest.mark.parametrize("h,w", [(9, 14), (16, 16)])
def test_coarse_skip_is_pytorch_bicubic_up_to_the_image_edge(h, w):
    """The coarse net learns a residual over this skip: a fixed-conv stand-in for onnxruntime's
    slow cubic Resize must be the same bicubic, clamped edges included, or every trained weight
    would sit on a different base image."""
    from torch.nn import functional as F

    from export.networks.resample import BicubicUpsample

    x = torch.rand(2, 3, h, w)
    ref = F.interpolate(x, scale_factor=4.0, mode="bicubic", align_corners=False)
    assert float((BicubicUpsample(4)(x) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("factor", [2, 4])
def test_strided_stem_equals_unshuffle_then_conv(factor):
    from export.networks.blocks import conv3x3, conv_of_unshuffled, space_to_depth

    conv = conv3x3(3 * factor * factor, 8)
    x = torch.rand(1, 3, 8 * factor, 6 * factor)
    with torch.no_grad():
        diff = conv(space_to_depth(x, factor)) - conv_of_unshuffled(x, conv, factor)
    assert float(diff.abs().max()) < 1e-5


@pytest.mark.parametrize("stride", [2, 4])
def test_condition_positions_follow_the_patch_raster_of_the_index_grid(stride):
    """cond[n, py, px, t] must belong to index cell (py*k + t//k, px*k + t%k): the LAR step reads
    position t from it. Reference: the plain chain (1x1 conv, pixel_shuffle to the index grid,
    unfold k x k patches) that the channel-last rewrite replaces."""
    from torch.nn import functional as F

    from export.configs import get_config
    from export.networks.lar import ConditionEncoder

    cfg = get_config("tiny").with_overrides(cond_stride=stride)
    enc = ConditionEncoder(cfg).eval()
    k, lift = cfg.patch_size, stride // 2
    feat = torch.rand(1, cfg.cond_features, 4 * k // stride * 2, 4 * k // stride * 3)
    with torch.no_grad():
        cond = enc._per_position(feat)
        grid = F.pixel_shuffle(enc.to_positions(feat), lift) if lift > 1 else enc.to_positions(feat)
    _, hp, wp, positions, c = cond.shape
    assert positions == k * k and grid.shape[2:] == (hp * k, wp * k)
    for py, px, t in [(0, 0, 0), (1, 2, 5), (hp - 1, wp - 1, k * k - 1), (0, 1, k + 1)]:
        cell = grid[0, :, py * k + t // k, px * k + t % k]
        assert float((cond[0, py, px, t] - cell).abs().max()) < 1e-5


def test_base_shaped_tiles_equal_the_whole_image(base_shaped):
    from larsr_cli.pipeline import Upscaler

    _, folder = base_shaped
    up = Upscaler(folder, device="cpu")
    lr = np.random.default_rng(3).random((24, 40, 3), dtype=np.float32)
    for t in (0.0, 0.7):
        whole = up.upscale_array(lr, seed=4, temperature=t, tile=0)
        assert np.array_equal(whole, up.upscale_array(lr, seed=4, temperature=t, tile=16))


@pytest.mark.parametrize("h,w", SIZES)
def test_lar_step_and_full_match_torch(sessions, tiny_torch_model, h, w):
    m = tiny_torch_model
    torch.manual_seed(h + w)
    with torch.no_grad():
        xc = m.coarse(torch.rand(1, 3, h, w))
        cond, start = m.lar.condition(xc)
        idx = torch.randint(0, m.cfg.codebook_size, (1, 2 * h, 2 * w))
        full = m.lar(xc, idx)
        hp, wp = 2 * h // 4, 2 * w // 4
        cache = [tuple(torch.randn_like(a) for a in pair) for pair in m.lar.empty_cache(1, hp, wp)]
        prev = torch.randint(0, m.cfg.codebook_size, (1, hp, wp))
        for t in (0, 7, 15):
            tt = torch.tensor([t])
            past = m.lar.cache_prefix(cache, t)
            logits, kv = m.lar.step(prev, tt, cond, start, past)
            past_feeds = {
                f"past_{kind}_{i}": a.numpy()
                for i, pair in enumerate(past)
                for kind, a in zip("kv", pair, strict=True)
            }
            feeds = {"prev_code": prev.numpy(), "t": tt.numpy(), "cond": cond.numpy(), "start": start.numpy()}
            logits_onnx, kv_onnx = sessions["lar_step"].run(None, {**feeds, **past_feeds})
            assert logits_onnx.shape == (1, hp, wp, m.cfg.codebook_size)
            assert _max_diff(logits_onnx, logits) < TOL and _max_diff(kv_onnx, kv) < TOL
    (full_onnx,) = sessions["lar_full"].run(None, {"xc": xc.numpy(), "indices": idx.numpy()})
    assert _max_diff(full_onnx, full) < TOL


def test_lar_is_causal(tiny_torch_model):
    """Changing the code at position t changes no logits at positions <= t of any patch."""
    m = tiny_torch_model
    torch.manual_seed(3)
    with torch.no_grad():
        xc = m.coarse(torch.rand(1, 3, 8, 8))
        idx = torch.randint(0, m.cfg.codebook_size, (1, 16, 16))
        base = m.lar.to_patches(idx)
        ref = m.lar(xc, idx)
        for t in (0, 5, 15):
            changed = base.clone()
            changed[..., t] = (changed[..., t] + 1) % m.cfg.codebook_size
            out = m.lar(xc, m.lar.from_patches(changed.unsqueeze(-1)).squeeze(-1))
            diff = (m.lar.to_patches_logits(out) - m.lar.to_patches_logits(ref)).abs().amax(dim=(0, 1, 2, 4))
            assert torch.all(diff[: t + 1] == 0), f"positions <= {t} saw the code at {t}"
            if t < 15:
                assert diff[t + 1 :].max() > 0, "later positions should depend on earlier codes"


def test_cached_steps_equal_teacher_forced_forward(tiny_torch_model):
    m = tiny_torch_model
    torch.manual_seed(4)
    with torch.no_grad():
        xc = m.coarse(torch.rand(1, 3, 10, 14))
        idx = torch.randint(0, m.cfg.codebook_size, (1, 20, 28))
        full = m.lar(xc, idx)
        cond, start = m.lar.condition(xc)
        seq = m.lar.to_patches(idx)
        n, hp, wp, positions = seq.shape
        cache = m.lar.empty_cache(n, hp, wp)
        steps = []
        for t in range(positions):
            prev = seq[..., t - 1] if t else torch.zeros_like(seq[..., 0])
            logits, kv = m.lar.step(prev, torch.tensor([t]), cond, start, m.lar.cache_prefix(cache, t))
            m.lar.write_cache(cache, kv, t)
            steps.append(logits.reshape(n, hp, wp, -1))
        stepped = m.lar.from_patches(torch.stack(steps, dim=3))
    assert float((stepped - full).abs().max()) < 1e-5


def test_manifest_hashes_match_files(tiny_model_dir):
    manifest = load_manifest(tiny_model_dir)  # verifies every sha256
    for name, entry in manifest.files.items():
        assert sha256_of(tiny_model_dir / name) == entry["sha256"]
    assert manifest.context_margin >= sum(manifest.receptive_field.values())
    assert manifest.context_margin % manifest.tile_multiple == 0


def test_wrong_hash_fails_clearly(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    data = json.loads((bad / "manifest.json").read_text())
    data["graphs"]["decoder"]["sha256"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="decoder.onnx: sha256 mismatch"):
        load_manifest(bad)


def test_tampered_graph_is_refused(tiny_model_dir, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(tiny_model_dir, bad)
    with open(bad / "coarse.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="coarse.onnx"):
        load_manifest(bad)


@pytest.mark.parametrize(
    "mark, message",
    [(None, "no cache-layout mark.*re-export"), ("P,heads,T,d", "layout 'P,heads,T,d'.*re-export")],
)
def test_step_graph_of_another_cache_layout_is_refused(tiny_model_dir, tmp_path, mark, message):
    """A step graph from an earlier export reads its cache in another layout (unmarked: keys
    transposed, with the same input shapes whenever d == T; 'P,heads,T,d': the whole masked cache,
    whose input ranks match this one's only by accident of a reshape): fed this runtime's cache it
    would compute nonsense or fail mid-run, so it is one clear error at load instead."""
    import onnx

    from larsr_cli.arch.lar import CACHE_LAYOUT, CACHE_LAYOUT_KEY
    from larsr_cli.pipeline import Upscaler

    folder = tmp_path / "old-export"
    shutil.copytree(tiny_model_dir, folder)
    step = onnx.load(str(folder / "lar_step.onnx"))
    assert {p.key: p.value for p in step.metadata_props}.get(CACHE_LAYOUT_KEY) == CACHE_LAYOUT
    del step.metadata_props[:]
    if mark is not None:
        onnx.helper.set_model_props(step, {CACHE_LAYOUT_KEY: mark})
    onnx.save(step, str(folder / "lar_step.onnx"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graphs"]["lar_step"]["sha256"] = sha256_of(folder / "lar_step.onnx")
    manifest["graphs"]["lar_step"]["bytes"] = (folder / "lar_step.onnx").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message) as caught:
        Upscaler(folder, device="cpu")
    assert "\n" not in str(caught.value)


def test_config_round_trips_through_manifest(tiny_model_dir, tiny_torch_model):
    from export.configs import LarsrConfig

    manifest = load_manifest(tiny_model_dir)
    assert LarsrConfig.from_dict(manifest.config) == tiny_torch_model.cfg


def _row(psnr: float, lpips: float, dists: float, lr_db: float, stripes: float = 1.0) -> dict:
    return {
        "psnr_y": psnr,
        "lpips": lpips,
        "dists": dists,
        "lr_db": lr_db,
        "stripes": stripes,
        "stripes_hr": 1.0,
    }


def test_default_is_lowest_dists_among_faithful_settings_never_lpips():
    from export.evaluate import choose_default

    methods = {
        "bicubic": _row(30.0, 0.50, 0.30, 40.0),
        "coarse": _row(31.0, 0.40, 0.25, 60.0),
        "T=0,S=0.5": _row(30.6, 0.35, 0.22, 50.0),
        "T=0.3,S=0.5": _row(30.4, 0.33, 0.20, 48.0),  # the faithful one with the lowest DISTS
        "T=0.3,S=1": _row(30.1, 0.20, 0.19, 47.0),  # best LPIPS and DISTS, but only +0.1 dB
        "T=1,S=1": _row(30.5, 0.25, 0.18, 44.0),  # drifts from the input (LR-consistency < 45)
        "T=0,S=1": _row(30.8, 0.30, 0.17, 49.0, stripes=1.3),  # striped
    }
    assert choose_default(methods) == (0.3, 0.5)
    for key in ("T=0,S=0.5", "T=0.3,S=0.5"):
        methods[key]["lr_db"] = 30.0
    assert choose_default(methods) == (0.0, 0.5)  # none faithful: the gentlest texture at T=0


def test_bars_are_judged_against_coarse_and_bicubic():
    from export.evaluate import check_bars

    methods = {
        "bicubic": _row(30.0, 0.50, 0.30, 40.0),
        "coarse": _row(31.0, 0.40, 0.25, 60.0),
        "T=0,S=0.5": _row(30.6, 0.35, 0.22, 50.0, stripes=1.05),
        "T=0.3,S=0.5": {**_row(30.4, 0.33, 0.20, 48.0), "pixel_std_across_seeds_0_255": 1.5},
    }
    bars = check_bars(methods, (0.3, 0.5))
    assert bars["lpips_vs_coarse"]["holds"] is True  # 0.825x
    assert bars["dists_vs_coarse"]["holds"] is True  # 0.8x
    assert bars["psnr_gain_over_bicubic_db"]["holds"] is True  # +0.4 dB
    assert bars["stripe_excess_t0"]["holds"] is True  # 0.05
    methods["T=0,S=0.5"]["stripes"] = 1.2
    methods["T=0.3,S=0.5"]["psnr_y"] = 30.2
    bars = check_bars(methods, (0.3, 0.5))
    assert bars["stripe_excess_t0"]["holds"] is False
    assert bars["psnr_gain_over_bicubic_db"]["holds"] is False


def test_shipped_model_records_its_bars_and_defaults_from_its_scores():
    """The embedded model's manifest carries its verdicts on the detail set; they and the defaults
    follow from the stored scores by the evaluation's own rule, not from hand edits."""
    from export.evaluate import SELECT_SET, check_bars, choose_default
    from larsr_cli.registry import resolve_model

    manifest = load_manifest(resolve_model("larsr-x4"))
    assert manifest.metrics["selected_on"] == SELECT_SET == "detail"
    methods = manifest.metrics["sets"]["detail"]["methods"]
    assert set(manifest.metrics["sets"]) == {"val", "detail"}
    default = (manifest.default_temperature, manifest.default_texture)
    assert choose_default(methods) == default
    assert check_bars(methods, default) == manifest.metrics["bars"]
