"""interir.metrics against independently computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interir.errors import InterIRError
from interir.metrics import psnr, ssim


# ---------------------------------------------------------------- independent references
def _q(img: np.ndarray) -> np.ndarray:
    """8-bit quantisation as documented: clip, floor(x*255 + 0.5), float64."""
    return np.floor(np.clip(img.astype(np.float64), 0, 1) * 255 + 0.5)


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def ref_ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), valid positions only, L = 255."""
    r = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
    win = np.outer(g, g)
    win /= win.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    xs = np.lib.stride_tricks.sliding_window_view(x, (11, 11))  # (H-10, W-10, 11, 11)
    ys = np.lib.stride_tricks.sliding_window_view(y, (11, 11))
    mx = np.einsum("ijkl,kl->ij", xs, win)
    my = np.einsum("ijkl,kl->ij", ys, win)
    sxx = np.einsum("ijkl,kl->ij", xs * xs, win) - mx * mx
    syy = np.einsum("ijkl,kl->ij", ys * ys, win) - my * my
    sxy = np.einsum("ijkl,kl->ij", xs * ys, win) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(smap.mean())


def ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    if a.ndim == 2:
        return ref_ssim_channel(a, b)
    return float(np.mean([ref_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def ref_y(img255: np.ndarray) -> np.ndarray:
    x = img255 / 255.0
    return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    target = rng.random((40, 48, 3)).astype(np.float32)
    # smooth-ish structure plus noise, so SSIM is neither ~0 nor ~1
    pred = np.clip(0.7 * target + 0.15 + rng.normal(0, 0.08, target.shape), 0, 1)
    return pred.astype(np.float32), target


# ---------------------------------------------------------------- PSNR
def test_psnr_matches_reference(pair):
    pred, target = pair
    assert psnr(pred, target) == pytest.approx(ref_psnr(_q(pred), _q(target)), abs=1e-10)


def test_psnr_identical_is_inf():
    img = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(img, img) == math.inf
    assert psnr(img, img, y_channel=True) == math.inf


def test_psnr_constant_offset_of_10():
    rng = np.random.default_rng(1)
    target = rng.integers(20, 200, size=(24, 24, 3)).astype(np.float64) / 255.0
    pred = target + 10 / 255.0
    assert psnr(pred, target) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)
    # Y channel: every channel +10 changes Y by 10 * (65.481 + 128.553 + 24.966) / 255
    dy = 10 * (65.481 + 128.553 + 24.966) / 255
    assert psnr(pred, target, y_channel=True) == pytest.approx(20 * math.log10(255 / dy), abs=1e-9)


def test_psnr_quantises_to_8_bit():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 256, size=(8, 8, 3)).astype(np.float64) / 255.0
    # sub-quantum perturbation disappears, as it would in a saved PNG
    assert psnr(target + 0.3 / 255.0, target) == math.inf
    # values outside [0,1] are clipped like save_image does
    assert psnr(np.full((8, 8, 3), 1.7), np.ones((8, 8, 3))) == math.inf


def test_psnr_y_channel_matches_reference(pair):
    pred, target = pair
    want = ref_psnr(ref_y(_q(pred)), ref_y(_q(target)))
    assert psnr(pred, target, y_channel=True) == pytest.approx(want, abs=1e-10)
    assert psnr(pred, target, y_channel=True) != pytest.approx(psnr(pred, target), abs=1e-3)


def test_crop_border_ignores_border():
    rng = np.random.default_rng(3)
    target = rng.random((30, 40, 3))
    pred = target.copy()
    pred[:6] = 1 - pred[:6]           # damage only a 6-pixel frame (wider than SSIM's
    pred[:, -6:] = 0                  # 5-pixel window radius, so SSIM sees it too)
    assert math.isfinite(psnr(pred, target))
    assert ssim(pred, target) < 0.9
    assert psnr(pred, target, crop_border=6) == math.inf
    assert ssim(pred, target, crop_border=6) == pytest.approx(1.0, abs=1e-12)
    # cropping less keeps part of the damage
    inner = ref_psnr(_q(pred)[1:-1, 1:-1], _q(target)[1:-1, 1:-1])
    assert psnr(pred, target, crop_border=1) == pytest.approx(inner, abs=1e-10)


def test_torch_inputs_match_numpy(pair):
    pred, target = pair
    tp = torch.from_numpy(pred).permute(2, 0, 1)
    tt = torch.from_numpy(target).permute(2, 0, 1)
    want_p, want_s = psnr(pred, target), ssim(pred, target)
    assert psnr(tp, tt) == pytest.approx(want_p, abs=1e-12)
    assert psnr(tp[None], tt[None]) == pytest.approx(want_p, abs=1e-12)
    assert psnr(tp[None], target) == pytest.approx(want_p, abs=1e-12)
    assert ssim(tp, tt[None]) == pytest.approx(want_s, abs=1e-12)


# ---------------------------------------------------------------- SSIM
def test_ssim_matches_direct_wang_formula(pair):
    pred, target = pair
    got = ssim(pred, target)
    want = ref_ssim(_q(pred), _q(target))
    assert 0.2 < want < 0.95  # a non-trivial case
    assert got == pytest.approx(want, abs=1e-9)


def test_ssim_y_channel_matches_direct_formula(pair):
    pred, target = pair
    want = ref_ssim(ref_y(_q(pred)), ref_y(_q(target)))
    assert ssim(pred, target, y_channel=True) == pytest.approx(want, abs=1e-9)


def test_ssim_crop_border_matches_direct_formula(pair):
    pred, target = pair
    want = ref_ssim(_q(pred)[3:-3, 3:-3], _q(target)[3:-3, 3:-3])
    assert ssim(pred, target, crop_border=3) == pytest.approx(want, abs=1e-9)


def test_ssim_identical_is_one_and_decreases_with_noise():
    rng = np.random.default_rng(4)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    vals = [ssim(np.clip(img + rng.normal(0, s, img.shape), 0, 1), img) for s in (0.02, 0.1, 0.3)]
    assert vals[0] > vals[1] > vals[2]


def test_ssim_constant_offset_luminance_term():
    # constant images: only the luminance term remains; check against the closed form
    a = np.full((16, 16, 3), 100 / 255.0)
    b = np.full((16, 16, 3), 110 / 255.0)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    want = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1) * (c2 / c2)
    assert ssim(a, b) == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [psnr, ssim])
def test_shape_mismatch_is_user_error(fn):
    with pytest.raises(InterIRError, match="sizes differ"):
        fn(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))


@pytest.mark.parametrize("bad", [np.zeros((16, 16)), np.zeros((16, 16, 4)),
                                 torch.zeros(2, 3, 16, 16), torch.zeros(16, 16, 3), [[0.0]],
                                 np.zeros((16, 16, 3), dtype=np.int64)])
def test_bad_inputs_are_user_errors(bad):
    with pytest.raises(InterIRError):
        psnr(bad, np.zeros((16, 16, 3)))


def test_crop_and_size_errors():
    img = np.zeros((16, 16, 3))
    with pytest.raises(InterIRError, match="crop_border"):
        psnr(img, img, crop_border=8)
    with pytest.raises(InterIRError, match="crop_border"):
        psnr(img, img, crop_border=-1)
    with pytest.raises(InterIRError, match="at least 11x11"):
        ssim(img, img, crop_border=3)
    with pytest.raises(InterIRError, match="NaN"):
        psnr(np.full((16, 16, 3), np.nan), img)
