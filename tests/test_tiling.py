"""Tiled inference: tile layout, blending weights, and the CLI's --tile."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interir
from interir.errors import InterIRError
from interir.tiling import blend_ramp, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 64, 8), (65, 64, 8), (1000, 512, 64), (30, 64, 8)])
def test_tiles_cover_the_image_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    for a, b in zip(starts, starts[1:]):
        assert 0 < b - a <= tile - overlap          # neighbours share at least `overlap` pixels


def test_blend_ramp_is_positive_and_flat_inside():
    w = blend_ramp(32, 8, lead=True, tail=True)
    assert (w > 0).all() and w.max() == 1.0
    assert torch.all(w[8:24] == 1.0) and torch.all(w[:8].diff() > 0) and torch.all(w[24:].diff() < 0)
    assert torch.all(blend_ramp(32, 8, lead=False, tail=False) == 1.0)


def test_pointwise_model_tiled_equals_untiled():
    x = torch.rand(1, 3, 77, 130)
    model = lambda t: t.sqrt() * 0.5 + 0.1       # noqa: E731 - no spatial context: tiling is exact
    y = interir.restore_tiled(model, x, tile=32, overlap=8)
    assert torch.allclose(y, model(x), atol=1e-6)


def test_blending_hides_a_per_tile_offset():
    """A model that adds a different constant to every tile: blended, the jump at a seam is
    spread over the overlap instead of one step."""
    calls = []

    def model(t):
        calls.append(t.shape)
        return t + 0.1 * len(calls)

    x = torch.zeros(1, 3, 16, 120)
    y = interir.restore_tiled(model, x, tile=48, overlap=16)[0, 0, 0]
    assert len(calls) == len(tile_starts(120, 48, 16)) == 4
    assert y.diff().abs().max() < 0.1 / 8     # the 0.1 jump spread over ≥ 8 pixels


def test_small_image_is_restored_whole():
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=1, channels=8).eval()
    x = torch.rand(1, 3, 40, 52)
    with torch.inference_mode():
        assert torch.equal(interir.restore_tiled(model, x, tile=64, overlap=8), model(x))


@pytest.mark.parametrize("tile,overlap", [(8, 0), (64, 32), (64, -1)])
def test_bad_tiling_is_refused(tile, overlap):
    with pytest.raises(InterIRError, match="tile"):
        interir.restore_tiled(lambda t: t, torch.zeros(1, 3, 20, 20), tile=tile, overlap=overlap)


def test_cli_restore_tiled(tmp_path):
    from interir.imageio import load_image, save_image
    rng = np.random.default_rng(0)
    save_image(rng.random((150, 200, 3)).astype(np.float32), tmp_path / "in.png")
    cli = [sys.executable, "-m", "interir.cli", "restore", str(tmp_path / "in.png")]
    ok = subprocess.run(cli + [str(tmp_path / "out.png"), "--tile", "96", "--tile-overlap", "16"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert load_image(tmp_path / "out.png").shape == (150, 200, 3)
    bad = subprocess.run(cli + [str(tmp_path / "bad.png"), "--tile", "96", "--tile-overlap", "60"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--tile-overlap" in bad.stderr and "Traceback" not in bad.stderr
