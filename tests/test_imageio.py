"""interir/imageio.py: the shared area downscale of the model input (app and `interir report`)."""
from __future__ import annotations

import numpy as np

from interir.imageio import downscale


def test_downscale_keeps_the_aspect_and_averages_areas():
    rng = np.random.default_rng(0)
    img = rng.random((300, 1200, 3), dtype=np.float32)
    out = downscale(img, 600)
    assert out.shape == (150, 600, 3) and out.dtype == np.float32
    # area filter at an integer factor 2: each output pixel is the mean of a 2×2 block
    np.testing.assert_allclose(out[3, 7], img[6:8, 14:16].mean(axis=(0, 1)), rtol=1e-5)
    tall = downscale(np.ones((1001, 10, 3), np.float32), 100)
    assert tall.shape == (100, 1, 3)


def test_downscale_leaves_small_images_and_zero_alone():
    img = np.zeros((40, 30, 3), np.float32)
    assert downscale(img, 40) is img
    big = np.zeros((4000, 30, 3), np.float32)
    assert downscale(big, 0) is big
