"""DISTS, the stripe score and the detail-rich set: the metrics that choose the model's defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.metrics import stripe_score


def _photo(seed: int = 0, size: int = 128) -> np.ndarray:
    """A natural-looking test image: smooth shapes plus 1/f noise (no periodic structure)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) + 1.0 / size
    planes = []
    for _ in range(3):
        spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius
        plane = np.real(np.fft.ifft2(spectrum))
        planes.append((plane - plane.min()) / (plane.max() - plane.min()))
    return np.stack(planes, axis=2).astype(np.float32)


def test_stripe_score_is_near_one_for_a_photo_and_high_for_4px_stripes():
    img = _photo()
    assert 0.6 < stripe_score(img) < 1.6
    striped = img.copy()
    striped[:, ::4] = np.clip(striped[:, ::4] + 0.04, 0, 1)  # one faint stripe every 4 px
    assert stripe_score(striped) > stripe_score(img) + 1.0
    rows = img.copy()
    rows[::8] = np.clip(rows[::8] - 0.04, 0, 1)  # horizontal lines every 8 px count too
    assert stripe_score(rows) > stripe_score(img) + 0.5
    assert stripe_score(rows) < stripe_score(striped)  # 8 px lines of the same step are weaker


def test_stripe_score_ignores_amplitude_and_blur_of_a_clean_image():
    img = _photo(1)
    soft = 0.5 * img + 0.25
    assert abs(stripe_score(soft) - stripe_score(img)) < 1e-6


def test_dists_is_zero_for_identical_images_and_grows_with_damage():
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    from export.dists import DISTS

    try:
        dists = DISTS()
    except FileNotFoundError as exc:  # weights come from `python -m export.lpips convert`
        pytest.skip(str(exc))
    x = torch.from_numpy(_photo(2).transpose(2, 0, 1).copy())[None]
    blur1 = F.avg_pool2d(x, 3, 1, 1)
    blur2 = F.avg_pool2d(blur1, 5, 1, 2)
    assert abs(float(dists(x, x)[0])) < 1e-4
    d1, d2 = float(dists(x, blur1)[0]), float(dists(x, blur2)[0])
    assert 0 < d1 < d2 < 1
    assert abs(float(dists(blur1, x)[0]) - d1) < 1e-5  # symmetric


def test_detail_crops_are_fixed_varied_and_held_out():
    from export import data
    from export.scoring import DETAIL_CROPS

    spec = json.loads(DETAIL_CROPS.read_text(encoding="utf-8"))
    crops = spec["crops"]
    assert len(crops) >= 24 and spec["size"] % 4 == 0
    kinds = " ".join(c["what"] for c in crops)
    for needed in ("face", "fur", "text", "building", "foliage", "fabric"):
        assert needed in kinds, needed
    for c in crops:
        assert data.split_of(c["name"]) != "train", c["name"]
        assert c["name"].split("__")[0] in data.DETAIL_PACKAGES


def test_stripe_penalty_charges_only_stripes_the_hr_crop_lacks():
    torch = pytest.importorskip("torch")
    from export.train import stripe_penalty

    hr = torch.from_numpy(_photo(3, 96).transpose(2, 0, 1).copy())[None]
    assert float(stripe_penalty(hr, hr)) == 0.0
    striped = hr.clone().requires_grad_(True)
    bump = torch.zeros_like(hr)
    bump[..., ::4] = 0.05
    loss = stripe_penalty(striped + bump, hr)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert striped.grad is not None and float(striped.grad.abs().sum()) > 0
    # an HR crop that has the stripes itself (bricks, fabric) is not penalised for keeping them
    assert float(stripe_penalty(hr + bump, hr + bump)) == 0.0
