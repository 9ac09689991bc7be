"""Image quality metrics: PSNR and SSIM computed the way BasicSR does.

Conventions (so that numbers match what a user gets from the saved PNGs and from BasicSR's
``calculate_psnr`` / ``calculate_ssim``):

* Inputs are float images in [0, 1]: numpy ``(H, W, 3)`` or torch ``(3, H, W)`` /
  ``(1, 3, H, W)``. They are first **quantised to 8 bit** exactly like
  :func:`interir.imageio.to_uint8` (clip to [0, 1], ``floor(x * 255 + 0.5)``), so the metric
  of an in-memory result equals the metric of the PNG written by ``save_image``.
* Everything is then computed in float64 on the 0-255 scale.
* ``y_channel=True`` converts to the BT.601 luma of BasicSR's ``rgb2ycbcr(..., y_only=True)``:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1] (Y not re-rounded, as
  in BasicSR).
* ``crop_border=n`` removes ``n`` pixels from every side before measuring.
* PSNR: ``10 log10(255^2 / MSE)`` over all pixels and channels; identical images give ``inf``.
* SSIM: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  L = 255, population covariances, averaged over the valid (un-padded) window positions; for
  RGB, computed per channel and averaged. Implemented with scikit-image's
  ``structural_similarity`` (which is numerically the same as BasicSR's ``_ssim``). Images
  must be at least 11x11 after cropping.
"""
from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from .errors import InterIRError

try:  # torch is a hard dependency of the package, but keep metrics importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

ImageLike = Union[np.ndarray, "torch.Tensor"]

#: Window side of the Gaussian SSIM window (sigma 1.5, truncated at 3.5 sigma).
SSIM_WINDOW = 11


def _to_hwc(img: Any, what: str) -> np.ndarray:
    """Return a float64 (H, W, 3) array in [0, 1] from numpy HWC or torch CHW / 1CHW."""
    if torch is not None and isinstance(img, torch.Tensor):
        t = img.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise InterIRError(f"{what}: expected a single image (1,3,H,W), got a batch of "
                                   f"shape {tuple(t.shape)}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise InterIRError(f"{what}: expected a torch tensor of shape (3,H,W) or (1,3,H,W), "
                               f"got {tuple(t.shape)}")
        arr = t.to(device="cpu", dtype=torch.float64).permute(1, 2, 0).numpy()
    elif isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3:
            raise InterIRError(f"{what}: expected a numpy array of shape (H,W,3), "
                               f"got {img.shape}")
        if img.dtype == np.uint8:
            arr = img.astype(np.float64) / 255.0
        elif np.issubdtype(img.dtype, np.floating) or img.dtype == np.bool_:
            arr = img.astype(np.float64)
        else:
            raise InterIRError(f"{what}: unsupported dtype {img.dtype}; use float in [0,1] "
                               "or uint8")
    else:
        raise InterIRError(f"{what}: expected a numpy array or torch tensor, "
                           f"got {type(img).__name__}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InterIRError(f"{what}: empty image of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InterIRError(f"{what}: contains NaN or infinite values")
    return arr


def _prepare(pred: ImageLike, target: ImageLike, crop_border: int,
             y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Quantise, crop and optionally convert to Y; returns float64 arrays on the 0-255 scale,
    (H, W, 3) or (H, W) for Y."""
    a = _to_hwc(pred, "prediction")
    b = _to_hwc(target, "target")
    if a.shape != b.shape:
        raise InterIRError(f"image sizes differ: prediction {a.shape[1]}x{a.shape[0]}, "
                           f"target {b.shape[1]}x{b.shape[0]} (width x height)")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) \
            or crop_border < 0:
        raise InterIRError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    h, w = a.shape[:2]
    if crop_border:
        if 2 * crop_border >= min(h, w):
            raise InterIRError(f"crop_border {crop_border} leaves nothing of a {w}x{h} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    # 8-bit quantisation identical to interir.imageio.to_uint8 (round half up).
    a = np.floor(np.clip(a, 0.0, 1.0) * 255.0 + 0.5)
    b = np.floor(np.clip(b, 0.0, 1.0) * 255.0 + 0.5)
    if y_channel:
        a = rgb_to_y(a / 255.0)
        b = rgb_to_y(b / 255.0)
    return a, b


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0-255 scale from RGB (..., 3) in [0, 1] (BasicSR ``y_only``)."""
    return 16.0 + img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966


def psnr(pred: ImageLike, target: ImageLike, crop_border: int = 0,
         y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (0-255 scale, after 8-bit quantisation).

    Returns ``inf`` for identical images. Raises :class:`InterIRError` on bad shapes.
    """
    a, b = _prepare(pred, target, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0 ** 2 / mse)


def ssim(pred: ImageLike, target: ImageLike, crop_border: int = 0,
         y_channel: bool = False) -> float:
    """Structural similarity (Gaussian 11x11, sigma 1.5, 0-255 scale, mean over channels).

    Raises :class:`InterIRError` on bad shapes or images smaller than 11x11 after cropping.
    """
    from skimage.metrics import structural_similarity

    a, b = _prepare(pred, target, crop_border, y_channel)
    h, w = a.shape[:2]
    if min(h, w) < SSIM_WINDOW:
        raise InterIRError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels "
                           f"(after cropping), got {w}x{h}")
    kwargs: dict[str, Any] = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255.0, K1=0.01, K2=0.03)
    if a.ndim == 3:
        kwargs["channel_axis"] = 2
    return float(structural_similarity(a, b, **kwargs))
