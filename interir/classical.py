"""A classical (learning-free) restoration baseline: "DCP + NLM".

1. **Dark channel prior dehazing** (He, Sun & Tang, CVPR 2009 / TPAMI 2011):

   * dark channel ``dark(I) = minfilter_15x15(min_c I_c)``;
   * airlight ``A``: the mean colour of the input over the brightest 0.1 % of dark-channel
     pixels (at least one pixel; the mean rather than He's single brightest pixel, which is
     less sensitive to noise and rain streaks);
   * transmission ``t = 1 - omega * dark(I / A)`` with ``omega = 0.95``;
   * refined with a guided filter (He et al., ECCV 2010) guided by the input's grey image,
     radius ``GF_RADIUS`` = 30 (61x61 box), ``eps = 1e-3``;
   * recovery ``J = (I - A) / max(t, t0) + A`` with ``t0 = 0.1``, clipped to [0, 1].

2. **Non-local means denoising** (Buades et al., 2005) of ``J`` with scikit-image's
   ``denoise_nl_means`` (``fast_mode=True``, 5x5 patches, search distance 6, ``h = 0.8 sigma``,
   ``sigma`` passed in so the expected noise is subtracted). ``sigma`` is estimated from ``J``
   with Donoho's robust wavelet estimator ``median(|HH|) / 0.6745`` on the finest diagonal
   detail band, averaged over channels - the estimator behind
   ``skimage.restoration.estimate_sigma``, here with a Haar wavelet computed directly in
   numpy because PyWavelets (which ``estimate_sigma`` needs) is not a dependency. NLM is
   skipped when the estimate is below ``0.5 / 255``.

No rain-specific step is included (a median filter would blur the textures the metrics
reward); the name "DCP + NLM" is exact. The pipeline is deterministic.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import minimum_filter, uniform_filter

from .errors import InterIRError

DARK_PATCH = 15
AIRLIGHT_FRACTION = 0.001
OMEGA = 0.95
T0 = 0.1
GF_RADIUS = 30
GF_EPS = 1e-3
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
NLM_H_FACTOR = 0.8
NLM_MIN_SIGMA = 0.5 / 255.0


def dark_channel(img: np.ndarray, patch: int = DARK_PATCH) -> np.ndarray:
    """Per-pixel minimum over channels and a ``patch`` x ``patch`` neighbourhood."""
    return minimum_filter(img.min(axis=2), size=patch, mode="nearest")


def estimate_airlight(img: np.ndarray, dark: np.ndarray,
                      fraction: float = AIRLIGHT_FRACTION) -> np.ndarray:
    """Mean colour (3,) of ``img`` over the brightest ``fraction`` of dark-channel pixels."""
    flat = dark.reshape(-1)
    k = max(1, int(round(flat.size * fraction)))
    # stable sort so ties are broken by position: deterministic
    idx = np.argsort(-flat, kind="stable")[:k]
    return img.reshape(-1, 3)[idx].mean(axis=0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = GF_RADIUS,
                  eps: float = GF_EPS) -> np.ndarray:
    """Grey-guide box-filter guided filter (He et al., 2010); both inputs (H, W) float."""
    size = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=size, mode="reflect")

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def estimate_noise_sigma(img: np.ndarray) -> float:
    """Robust Gaussian noise std of an (H, W, 3) image in [0, 1] (Haar MAD, channel mean)."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return 0.0
    x = img[:h, :w]
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    sig = np.median(np.abs(hh.reshape(-1, img.shape[2])), axis=0) / 0.6745
    return float(np.mean(sig))


def dehaze_dcp(img: np.ndarray) -> np.ndarray:
    """Dark channel prior dehazing of an (H, W, 3) float64 image in [0, 1]."""
    dark = dark_channel(img)
    airlight = np.maximum(estimate_airlight(img, dark), 1e-3)
    t = 1.0 - OMEGA * dark_channel(img / airlight)
    grey = img @ np.array([0.299, 0.587, 0.114])
    t = guided_filter(grey, t)
    t = np.maximum(t, T0)[..., None]
    return np.clip((img - airlight) / t + airlight, 0.0, 1.0)


def denoise_nlm(img: np.ndarray) -> np.ndarray:
    """Non-local means with a noise level estimated from the image itself."""
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma(img)
    if sigma < NLM_MIN_SIGMA or min(img.shape[:2]) < 2:
        return img
    out = denoise_nl_means(img, h=NLM_H_FACTOR * sigma, sigma=sigma, fast_mode=True,
                           patch_size=NLM_PATCH_SIZE, patch_distance=NLM_PATCH_DISTANCE,
                           channel_axis=-1)
    return np.clip(out, 0.0, 1.0)


def classical_restore(img: np.ndarray) -> np.ndarray:
    """Restore a degraded (H, W, 3) image in [0, 1] with DCP dehazing then NLM denoising.

    Returns float32 (H, W, 3) in [0, 1]. Deterministic. Raises :class:`InterIRError` for
    inputs that are not (H, W, 3) images.
    """
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", type(img).__name__)
        raise InterIRError(f"classical_restore expects an (H,W,3) numpy image, got {shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InterIRError(f"classical_restore: empty image of shape {img.shape}")
    if img.dtype == np.uint8:
        x = img.astype(np.float64) / 255.0
    else:
        x = np.asarray(img, dtype=np.float64)
    if not np.isfinite(x).all():
        raise InterIRError("classical_restore: image contains NaN or infinite values")
    x = np.clip(x, 0.0, 1.0)
    out = denoise_nlm(dehaze_dcp(x))
    return out.astype(np.float32)
