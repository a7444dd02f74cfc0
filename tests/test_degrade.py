"""The degradation and the metrics are the yardstick for everything else, so pin them down."""

from __future__ import annotations

import numpy as np
import pytest

from export.degrade import (
    bicubic_downscale,
    bicubic_downscale_torch,
    lr_consistency_db,
    quantize_8bit,
    to_uint8,
)
from export.metrics import psnr_y, rgb_to_y, ssim_y


def _photo_like(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus edges and fine texture: enough structure for resampling to matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None]
    base = base + 0.2 * ((xx > w / 2) ^ (yy > h / 3)).astype(np.float32)[..., None]
    img = base * np.array([1.0, 0.8, 0.6], dtype=np.float32) + 0.05 * rng.standard_normal((h, w, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def test_downscale_shape_dtype_and_constant_preserved():
    img = np.full((64, 48, 3), 0.37, dtype=np.float32)
    out = bicubic_downscale(img, 4)
    assert out.shape == (16, 12, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.37, atol=1e-6)  # kernel weights sum to one, borders included


def test_downscale_grayscale_and_factor_two():
    img = _photo_like()[:, :, 0]
    assert bicubic_downscale(img, 2).shape == (48, 64)


def test_downscale_does_not_clip_or_quantise():
    """A hard edge overshoots under bicubic; a clipped or rounded result would hide that."""
    img = np.zeros((32, 32, 3), dtype=np.float32)
    img[:, 16:] = 1.0
    out = bicubic_downscale(img, 4)
    assert out.min() < 0.0 or out.max() > 1.0
    assert not np.allclose(out * 255.0, np.rint(out * 255.0))


def test_downscale_is_antialiased():
    """A pixel-level checkerboard averages out; point sampling (no antialias) would keep it."""
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = bicubic_downscale(checker, 4)
    assert np.abs(out[2:-2, 2:-2] - 0.5).max() < 0.02


def _keys(d: float, a: float = -0.5) -> float:
    d = abs(d)
    if d < 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def test_downscale_matches_keys_kernel_by_hand():
    """Keys a=-0.5 stretched by the factor: one bright pixel spreads with these exact weights."""
    img = np.zeros((16, 16), dtype=np.float32)
    img[8, 8] = 1.0
    out = bicubic_downscale(img, 4)
    # Output pixel 2 is centred at input coordinate (2 + 0.5) * 4 = 10; taps are pixel centres i + 0.5.
    weights = np.array([_keys((i + 0.5 - 10.0) / 4) for i in range(16)])
    w1d = weights[8] / weights.sum()
    assert out[2, 2] == pytest.approx(w1d * w1d, rel=1e-5)
    # a=-0.75 (the non-antialiased OpenCV/torch default) would give a different value.
    alt = np.array([_keys((i + 0.5 - 10.0) / 4, a=-0.75) for i in range(16)])
    assert abs(out[2, 2] - (alt[8] / alt.sum()) ** 2) > 1e-4


def test_downscale_rejects_non_multiple_sizes():
    with pytest.raises(ValueError, match="multiple"):
        bicubic_downscale(np.zeros((30, 32, 3), dtype=np.float32), 4)


def test_torch_matches_pil():
    torch = pytest.importorskip("torch")
    img = _photo_like()
    ref = bicubic_downscale(img, 4)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = bicubic_downscale_torch(x, 4)[0].permute(1, 2, 0).numpy()
    assert out.shape == ref.shape
    interior = np.abs(out - ref)[2:-2, 2:-2].max()
    everywhere = np.abs(out - ref).max()
    # Measured: 1.8e-7 both in the interior and at the borders (same kernel, same renormalisation).
    assert interior < 1e-5, interior
    assert everywhere < 1e-5, everywhere


def test_torch_downscale_is_differentiable():
    torch = pytest.importorskip("torch")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    bicubic_downscale_torch(x, 4).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_to_uint8_and_quantize():
    img = np.array([[[-0.1, 0.5, 1.2]]], dtype=np.float32)
    assert to_uint8(img).tolist() == [[[0, 128, 255]]]
    q = quantize_8bit(np.array([0.2, 0.50001], dtype=np.float32))
    np.testing.assert_allclose(q * 255.0, np.rint(q * 255.0), atol=1e-4)


def test_lr_consistency_high_for_consistent_low_for_wrong():
    hr = _photo_like()
    lr = bicubic_downscale(hr)
    assert lr_consistency_db(hr, lr) == float("inf")
    assert lr_consistency_db(hr, quantize_8bit(lr)) > 50.0
    shifted = np.roll(hr, 3, axis=1)
    assert lr_consistency_db(shifted, lr) < 35.0


def test_rgb_to_y_matches_matlab_range():
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255, abs=1e-4)
    assert rgb_to_y(np.array([[[1.0, 0.0, 0.0]]]))[0, 0] == pytest.approx((16 + 65.481) / 255)


def test_psnr_y_known_value_and_border():
    a = np.full((32, 32, 3), 0.5)
    b = a.copy()
    b[8:24, 8:24] += 0.1  # luma changes by 0.1 * 219/255 inside
    dy = 0.1 * (65.481 + 128.553 + 24.966) / 255
    mse = dy**2 * (16 * 16) / (24 * 24)
    assert psnr_y(a, b, border=4) == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
    c = a.copy()
    c[:4] = 0.0  # only the border differs
    assert psnr_y(a, c, border=4) == float("inf")


def test_ssim_y_properties():
    img = _photo_like(64, 64)
    assert ssim_y(img, img) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    light = np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)
    heavy = np.clip(img + 0.2 * rng.standard_normal(img.shape), 0, 1)
    s_light, s_heavy = ssim_y(img, light), ssim_y(img, heavy)
    assert 1.0 > s_light > s_heavy > 0.0


def test_ssim_y_matches_direct_window_computation():
    """One window computed by hand (11x11 Gaussian, sigma 1.5) equals the mean over a 1-window image."""
    rng = np.random.default_rng(2)
    a = rng.random((19, 19, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ya, yb = rgb_to_y(a)[4:-4, 4:-4] * 255, rgb_to_y(b)[4:-4, 4:-4] * 255
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * ya).sum(), (w * yb).sum()
    vx, vy = (w * ya * ya).sum() - mx**2, (w * yb * yb).sum() - my**2
    cxy = (w * ya * yb).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim_y(a, b, border=4) == pytest.approx(expected, rel=1e-9)
