"""Training runs a user can stop and start: resume, a second round, and the wall-clock budget.

The shipped weights were made in several sittings of at most ~90 minutes; these tests run the real
training loop on the tiny config and a synthetic photo folder for a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from export import train
from export.model import load_checkpoint


def run_stage(photos_dir: Path, run: Path, stage: str, *extra: str) -> None:
    train.main(
        [
            "--stage", stage, "--config", "tiny", "--data", str(photos_dir), "--run", str(run),
            "--batch", "2", "--hr-size", "32", "--val-side", "64", "--log-every", "1",
            "--threads", "1", "--cpu", *extra,
        ]
    )  # fmt: skip


def run_coarse(photos_dir: Path, run: Path, *extra: str) -> None:
    run_stage(photos_dir, run, "coarse", *extra)


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [rec for rec in map(json.loads, lines) if rec.get("event") == kind]


def saved_step(path: Path) -> int:
    return torch.load(path, weights_only=False)["step"]


def coarse_weights(run: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(run / "model.pt")
    return {k: v.clone() for k, v in model.coarse.state_dict().items()}


def test_interrupted_stage_resumes_at_its_saved_step(photos_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    run_coarse(photos_dir, run, "--steps", "3")
    assert saved_step(run / "coarse_state.pt") == 3
    run_coarse(photos_dir, run, "--steps", "5")
    assert [e["step"] for e in events(run, "start")] == [0, 3]
    assert [e["step"] for e in events(run, "done")] == [3, 5]
    assert saved_step(run / "coarse_state.pt") == 5


def test_second_round_has_its_own_schedule_and_state(photos_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    run_coarse(photos_dir, run, "--steps", "3")
    after_round_one = coarse_weights(run)
    run_coarse(photos_dir, run, "--steps", "2", "--round", "2")
    starts = events(run, "start")
    assert [(e["round"], e["step"]) for e in starts] == [(1, 0), (2, 0)]
    assert saved_step(run / "coarse_state.pt") == 3  # round one's state is left alone
    assert saved_step(run / "coarse_r2_state.pt") == 2
    _, extra = load_checkpoint(run / "model.pt")
    assert set(extra["stages"]) == {"coarse", "coarse_r2"}
    # Round two starts from round one's weights and trains them further.
    changed = [k for k, v in coarse_weights(run).items() if not torch.equal(v, after_round_one[k])]
    assert changed


def test_wall_clock_budget_ends_the_run_with_a_checkpoint(photos_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    run_coarse(photos_dir, run, "--steps", "1000000", "--minutes", "0.01")
    done = events(run, "done")
    assert len(done) == 1 and 0 < done[0]["step"] < 1_000_000
    assert "val_psnr_gain_db" in done[0]
    assert saved_step(run / "coarse_state.pt") == done[0]["step"]


@pytest.mark.parametrize("stage", ["vqvae", "lar"])
def test_later_stages_train_on_top_of_the_coarse_net(photos_dir: Path, tmp_path: Path, stage: str):
    run = tmp_path / "run"
    run_coarse(photos_dir, run, "--steps", "1")
    coarse_before = coarse_weights(run)
    run_stage(photos_dir, run, stage, "--steps", "2", "--lpips", "0", "--no-joint-coarse")
    assert saved_step(run / f"{stage}_state.pt") == 2
    # Without --joint-coarse the coarse net is frozen in the later stages.
    assert all(torch.equal(v, coarse_before[k]) for k, v in coarse_weights(run).items())


def test_graft_puts_one_runs_coarse_net_under_anothers_texture_stages(tmp_path: Path):
    """The texture stages read the coarse *image*, so a faster coarse net can take them over: the
    graft keeps every weight of both sources exactly, with the coarse shape in its config, and an
    existing output (a run to resume) is never overwritten."""
    from export.graft import main as graft_main
    from export.model import LarsrModel, save_checkpoint

    texture = LarsrModel.from_name("tiny", seed=0)
    torch.manual_seed(1)
    coarse = LarsrModel(texture.cfg.with_overrides(coarse_features=texture.cfg.coarse_features + 8))
    save_checkpoint(tmp_path / "texture.pt", texture)
    save_checkpoint(tmp_path / "coarse.pt", coarse)
    out = tmp_path / "run" / "model.pt"
    args = ["--texture", str(tmp_path / "texture.pt"), "--coarse", str(tmp_path / "coarse.pt")]
    args += ["--out", str(out)]
    graft_main(args)
    model, extra = load_checkpoint(out)
    assert model.cfg.coarse_features == coarse.cfg.coarse_features
    assert model.cfg.with_overrides(coarse_features=texture.cfg.coarse_features) == texture.cfg
    for part, source in (("coarse", coarse), ("vqvae", texture), ("lar", texture)):
        mine, theirs = getattr(model, part).state_dict(), getattr(source, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
    assert extra["graft"]["coarse"].endswith("coarse.pt")
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        graft_main(args)
    assert out.read_bytes() == before
