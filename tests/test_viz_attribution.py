"""viz.attribution: the "why this pixel?" figures (pure functions; results of interir.attribution in)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from interir.attribution import ChannelActivity, IterationChange, Region, attribution_map
from viz.attribution import (CHANNEL_COLUMNS, attribution_figure, channels_figure, channels_table,
                             iteration_change_figure, region_shape)
from viz.plots import from_typed_array, to_figure, to_json

torch.set_num_threads(1)


def small_attribution(h: int = 24, w: int = 32, region: Region | None = None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    region = region or Region.point(20, 6, radius=2)
    return attribution_map(model, torch.rand(1, 3, h, w), region, steps=2, max_side=None), region


def test_attribution_figure_outlines_the_region_and_names_the_method():
    a, region = small_attribution()
    img = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    fig = attribution_figure(img, a, region)
    to_figure(fig)                                        # plotly accepts it
    json.loads(to_json(fig))                              # and it is strict JSON
    image, heat = fig["data"]
    assert image["type"] == "image" and image["source"].startswith("data:image/jpeg;base64,")
    z = from_typed_array(heat["z"])
    np.testing.assert_allclose(z, a.map, rtol=1e-6)       # full resolution: the map itself
    assert heat["zmax"] == pytest.approx(np.percentile(a.map[a.map > 0], 99.5), rel=1e-5)
    shape = fig["layout"]["shapes"][0]
    assert shape["type"] == "circle"
    assert (shape["x0"] + shape["x1"]) / 2 == 20 and (shape["y0"] + shape["y1"]) / 2 == 6
    assert "Integrated gradients" in fig["layout"]["title"]["text"] and "Gu & Dong" in fig["layout"]["title"]["text"]
    assert "LAM" in fig["layout"]["title"]["text"]
    foot = fig["layout"]["annotations"][0]["text"]
    assert f"gap {100 * a.completeness_gap:.1f} %" in foot and "2 steps" in foot
    # the same from the JSON form
    again = attribution_figure(img, a.to_dict(with_map=True), region.to_dict())
    np.testing.assert_allclose(from_typed_array(again["data"][1]["z"]), a.map, rtol=1e-6)


def test_attribution_figure_pools_large_maps_in_pixel_coordinates():
    amap = np.zeros((300, 520), np.float32)
    amap[100:104, 400:404] = 1.0                          # one 4×4 block at rows 100.., cols 400..
    att = {"map": amap, "method": "m", "params": {}, "f_input": 1.0, "f_baseline": 0.0, "total": 1.0,
           "completeness_gap": 0.0, "inside_share": 1.0}
    fig = attribution_figure(np.zeros((300, 520, 3), np.uint8), att, {"kind": "box", "x0": 400, "y0": 100,
                                                                     "x1": 404, "y1": 104}, max_side=130)
    heat = fig["data"][1]
    z = from_typed_array(heat["z"])
    assert heat["dx"] == 4 and z.shape == (75, 130)
    r, c = np.unravel_index(np.argmax(z), z.shape)        # the cell's centre lands on the block
    assert heat["x0"] + c * heat["dx"] == pytest.approx(401.5)
    assert heat["y0"] + r * heat["dy"] == pytest.approx(101.5)
    assert region_shape({"kind": "box", "x0": 400, "y0": 100, "x1": 404, "y1": 104})["x1"] == 403.5


def test_attribution_figure_mismatch_is_an_empty_figure():
    a, region = small_attribution()
    fig = attribution_figure(np.zeros((10, 10, 3), np.uint8), a, region)
    assert fig["data"] == [] and "No attribution" in fig["layout"]["annotations"][0]["text"]


def test_iteration_change_figure():
    ch = IterationChange(region=np.array([0.2, 0.05, 0.01]), image=np.array([0.1, 0.02, 0.0]))
    fig = iteration_change_figure(ch, selected=1)
    to_figure(fig)
    reg, whole = fig["data"]
    assert reg["x"] == ["0 (vs input)", "1", "2"]
    np.testing.assert_allclose(reg["y"], [51.0, 12.75, 2.55])
    np.testing.assert_allclose(whole["y"], [25.5, 5.1, 0.0])
    assert reg["marker"]["color"][1] != reg["marker"]["color"][0]
    assert iteration_change_figure(ch.to_dict())["data"][0]["y"] == reg["y"]
    assert iteration_change_figure({"region": [], "image": []})["data"] == []


def test_channels_figure_and_table_keep_the_ranking():
    chans = [ChannelActivity("blocks.0.resm.ep_v.conv2", 7, 1.0, 0.25, 0.125),
             ChannelActivity("final_resm.ep_f.conv2", 3, 0.5, 0.5, float("nan"))]
    fig = channels_figure(chans)
    to_figure(fig)
    assert fig["data"][0]["y"] == ["blocks.0.resm.ep_v.conv2 · ch 7", "final_resm.ep_f.conv2 · ch 3"]
    assert fig["data"][0]["x"] == [100.0, 50.0] and fig["data"][1]["x"] == [25.0, 50.0]
    assert fig["layout"]["yaxis"]["autorange"] == "reversed"   # first ranked at the top
    rows = channels_table(chans)
    assert len(CHANNEL_COLUMNS) == len(rows[0])
    assert rows[0] == ["blocks.0.resm.ep_v.conv2", 7, 100.0, 25.0, 75.0, 0.125]
    assert rows[1][-1] is None
    assert channels_table([c.to_dict() for c in chans]) == rows
    empty = channels_figure([])
    assert empty["data"] == [] and "standard-conv" in empty["layout"]["annotations"][0]["text"]
