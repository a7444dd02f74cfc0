"""A LAR that draws two codes per step: same contract, half the steps, half the LAR margin.

``lar_codes_per_step = 2`` makes token ``s`` of a patch carry positions ``s`` and ``s + 8``; the
runtime must draw both from their own rows of logits with their own noise, the cached steps must
still be the teacher-forced forward pass, and tiles must still be exact with the smaller margin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from benchmarks.speed import instrumented
from larsr_cli.errors import LarsrError
from larsr_cli.pipeline import Upscaler


@pytest.fixture(scope="module")
def pair_model():
    from export.configs import get_config
    from export.model import LarsrModel

    torch.manual_seed(0)
    return LarsrModel(get_config("tiny").with_overrides(lar_codes_per_step=2)).eval()


@pytest.fixture(scope="module")
def pair_dir(pair_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.to_onnx import export_model

    out = tmp_path_factory.mktemp("models") / "tiny-pairs"
    export_model(pair_model, out, "tiny-pairs", with_full=True)
    return out


def _token_of(position: int, tokens: int) -> int:
    return position % tokens


def test_cached_pair_steps_equal_the_teacher_forced_forward(pair_model) -> None:
    m = pair_model.lar
    torch.manual_seed(4)
    with torch.no_grad():
        xc = pair_model.coarse(torch.rand(1, 3, 10, 14))
        idx = torch.randint(0, m.n_codes, (1, 20, 28))
        full = m(xc, idx)
        cond, start = m.condition(xc)
        cond = m.token_condition(cond)
        seq = m.to_patches(idx)
        n, hp, wp, _ = seq.shape
        tokens = m.tokens
        assert tokens == 8
        cache = m.empty_cache(n, hp, wp)
        out = torch.zeros(n, hp, wp, 16, m.n_codes)
        prev = torch.zeros(n, hp, wp, 2, dtype=torch.int64)
        for t in range(tokens):
            logits, kv = m.step(prev, torch.tensor([t]), cond, start, m.cache_prefix(cache, t))
            m.write_cache(cache, kv, t)
            out[..., t, :], out[..., t + tokens, :] = logits[..., 0, :], logits[..., 1, :]
            prev = torch.stack([seq[..., t], seq[..., t + tokens]], dim=-1)
    assert float((m.from_patches(out) - full).abs().max()) < 1e-5


def test_a_code_is_seen_only_by_later_tokens(pair_model) -> None:
    """Changing the code at position p changes no logits of its own token or earlier ones (so the
    other code drawn in the same step never depends on it), and changes the later tokens'."""
    m = pair_model.lar
    torch.manual_seed(3)
    token_of = torch.arange(16) % m.tokens
    with torch.no_grad():
        xc = pair_model.coarse(torch.rand(1, 3, 8, 8))
        idx = torch.randint(0, m.n_codes, (1, 16, 16))
        base = m.to_patches(idx)
        ref = m.to_patches_logits(m(xc, idx))
        for p in (0, 5, 8, 13):
            changed = base.clone()
            changed[..., p] = (changed[..., p] + 1) % m.n_codes
            out = m.to_patches_logits(m(xc, m.from_patches(changed.unsqueeze(-1)).squeeze(-1)))
            diff = (out - ref).abs().amax(dim=(0, 1, 2, 4))
            assert torch.all(diff[token_of <= token_of[p]] == 0), f"token {int(token_of[p])} saw position {p}"
            assert diff[token_of > token_of[p]].max() > 0


def test_exported_pair_graphs_match_torch(pair_model, pair_dir: Path) -> None:
    sessions = {
        n: ort.InferenceSession(str(pair_dir / f"{n}.onnx"), providers=["CPUExecutionProvider"])
        for n in ("condition", "lar_step", "lar_full")
    }
    m = pair_model.lar
    torch.manual_seed(7)
    h, w = 12, 20
    with torch.no_grad():
        xc = pair_model.coarse(torch.rand(1, 3, h, w))
        cond, start = m.condition(xc)
        cond = m.token_condition(cond)
        cond_onnx, _ = sessions["condition"].run(None, {"xc": xc.numpy()})
        assert np.abs(cond_onnx - cond.numpy()).max() < 1e-4
        hp, wp = 2 * h // 4, 2 * w // 4
        cache = [tuple(torch.randn_like(a) for a in pair) for pair in m.empty_cache(1, hp, wp)]
        prev = torch.randint(0, m.n_codes, (1, hp, wp, 2))
        for t in (0, 3, 7):
            past = m.cache_prefix(cache, t)
            logits, kv = m.step(prev, torch.tensor([t]), cond, start, past)
            feeds = {"prev_code": prev.numpy(), "t": np.array([t]), "cond": cond.numpy()}
            feeds["start"] = start.numpy()
            for i, (keys, values) in enumerate(past):
                feeds[f"past_k_{i}"], feeds[f"past_v_{i}"] = keys.numpy(), values.numpy()
            logits_onnx, kv_onnx = sessions["lar_step"].run(None, feeds)
            assert logits_onnx.shape == (1, hp, wp, 2, m.n_codes)
            assert np.abs(logits_onnx - logits.numpy()).max() < 1e-4
            assert np.abs(kv_onnx - kv.numpy()).max() < 1e-4
        idx = torch.randint(0, m.n_codes, (1, 2 * h, 2 * w))
        (full_onnx,) = sessions["lar_full"].run(None, {"xc": xc.numpy(), "indices": idx.numpy()})
        assert np.abs(full_onnx - m(xc, idx).numpy()).max() < 1e-4


def test_pairs_halve_the_steps_and_the_lar_margin(pair_dir: Path, tiny_model_dir: Path) -> None:
    pairs, single = Upscaler(pair_dir, device="cpu"), Upscaler(tiny_model_dir, device="cpu")
    assert pairs.manifest.spec.codes_per_step == 2 and pairs.manifest.spec.tokens == 8
    assert pairs.manifest.receptive_field["lar"] * 2 == single.manifest.receptive_field["lar"]
    lr = np.random.default_rng(1).random((16, 24, 3), dtype=np.float32)
    with instrumented(pairs) as (_, counts):
        pairs.upscale_array(lr, seed=0, temperature=1.0, tile=0)
    assert counts["lar_step"] == 8


def test_pair_tiles_equal_the_whole_image_and_seeds_differ(pair_dir: Path) -> None:
    up = Upscaler(pair_dir, device="cpu")
    lr = np.random.default_rng(3).random((40, 56, 3), dtype=np.float32)
    for t in (0.0, 0.8):
        whole = up.upscale_array(lr, seed=4, temperature=t, tile=0)
        assert len(up.plan(40, 56, 16)) > 1
        assert np.array_equal(whole, up.upscale_array(lr, seed=4, temperature=t, tile=16))
    assert not np.array_equal(
        up.upscale_array(lr, seed=4, temperature=0.8), up.upscale_array(lr, seed=5, temperature=0.8)
    )


def test_regroup_starts_a_pair_model_from_a_single_code_one(tiny_torch_model, tmp_path: Path) -> None:
    from export.model import save_checkpoint
    from export.regroup import main, regroup

    source = tmp_path / "single.pt"
    save_checkpoint(source, tiny_torch_model)
    out = tmp_path / "pairs.pt"
    main(["--checkpoint", str(source), "--codes-per-step", "2", "--out", str(out)])
    from export.model import load_checkpoint

    model, extra = load_checkpoint(out)
    assert model.lar.tokens == 8 and extra["regroup"]["codes_per_step"] == 2
    # The structure stages are the source's: the coarse image does not change.
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.coarse(lr), tiny_torch_model.coarse(lr))
    with pytest.raises(SystemExit, match="exists"):
        main(["--checkpoint", str(source), "--out", str(out)])
    with pytest.raises(LarsrError, match="already draws 2"):
        regroup(model, 2)


class _PlainSession:
    """A stand-in with ``run`` alone, as a test double or the quantiser's recorder is."""

    def __init__(self, inner: ort.InferenceSession) -> None:
        self.inner = inner

    def run(self, *args, **kwargs):
        return self.inner.run(*args, **kwargs)


@pytest.mark.parametrize("which", ["pairs", "single"])
def test_bound_step_outputs_give_the_same_picture_as_plain_runs(
    which: str, pair_dir: Path, tiny_model_dir: Path
) -> None:
    """The LAR step writes into reused numpy buffers (IOBinding) on a real session: the
    picture must be byte for byte the one that plain ``run`` calls give, over several tiles."""
    up = Upscaler(pair_dir if which == "pairs" else tiny_model_dir, device="cpu")
    lr = np.random.default_rng(7).random((40, 56, 3), dtype=np.float32)
    bound = up.upscale_array(lr, seed=2, temperature=0.9, tile=16)
    real = up.sessions["lar_step"]
    up.sessions["lar_step"] = _PlainSession(real)
    try:
        plain = up.upscale_array(lr, seed=2, temperature=0.9, tile=16)
    finally:
        up.sessions["lar_step"] = real
    assert np.array_equal(bound, plain)
